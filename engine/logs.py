"""One logging setup for every command: readable text by default, JSON lines with TIDINGS_LOG_FORMAT=json.

A redacting filter replaces every configured secret with ``***`` in every record, so
a library that logs a URL or a header cannot leak an API key into the log.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in _STANDARD_ATTRS and isinstance(value, str):
                    setattr(record, key, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(payload, ensure_ascii=False)


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the moment of each record.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream it was given; when that stream is
    replaced and closed (a test harness capturing output, a daemonised process re-opening its
    files), every later record from any thread fails with "I/O operation on closed file".
    """

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(
    fmt: str = "text",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    filters: Iterable[logging.Filter] = (),
) -> None:
    """One handler on the root logger; ``filters`` run on every record before the secrets are redacted
    (the CLI passes ``engine.store.outage.OneLineDatabaseErrors``: a lost database connection logged
    by any library is one line, not a traceback)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tidings", False):
            root.removeHandler(handler)
    handler = CurrentStderrHandler()
    handler._tidings = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    for extra in filters:
        handler.addFilter(extra)
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("alembic", "apscheduler", "httpx", "urllib3", "watchfiles", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
