"""Reading the file outbox the way a mail client shows it.

The file channels write ``OUTBOX/email/*.eml`` (RFC 5322) and ``OUTBOX/social/*.json``
atomically, through a temporary dot-file renamed into place; dot-files are therefore
never listed. A season's simulation can leave tens of thousands of files, so a listing
stats every entry but parses only the newest ``limit`` of them.
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from engine.web.preview.names import OUTBOX_KINDS, is_plain_name

LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One line of the outbox page."""

    kind: str  # email | social
    name: str
    modified: datetime
    size: int
    title: str  # the subject, or the post's text
    sender: str
    recipient: str
    campaign: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "modified": self.modified.isoformat(),
            "size": self.size,
            "title": self.title,
            "from": self.sender,
            "to": self.recipient,
            "campaign": self.campaign,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class OutboxListing:
    entries: list[OutboxEntry]
    total: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"total": dict(self.total), "entries": [entry.as_dict() for entry in self.entries]}


@dataclass(frozen=True, slots=True)
class OutboxEmail:
    """One ``.eml`` file, split as a mail client shows it."""

    name: str
    subject: str
    sender: str
    recipient: str
    date: str
    html: str | None
    text: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "email",
            "name": self.name,
            "subject": self.subject,
            "from": self.sender,
            "to": self.recipient,
            "date": self.date,
            "html": self.html,
            "text": self.text,
            "headers": [[name, value] for name, value in self.headers],
        }


def _scan(folder: Path, suffix: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.name.endswith(suffix) and is_plain_name(e.name) and e.is_file()]
    except FileNotFoundError:
        return []


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


def list_outbox(outbox_dir: Path, *, limit: int = LIST_LIMIT) -> OutboxListing:
    """The newest ``limit`` files of both folders, newest first, with how many each folder holds."""
    found: list[tuple[str, os.DirEntry[str]]] = []
    total: dict[str, int] = {}
    for kind, suffix in OUTBOX_KINDS.items():
        entries = _scan(outbox_dir / kind, suffix)
        total[kind] = len(entries)
        found.extend((kind, entry) for entry in entries)
    newest = heapq.nlargest(limit, found, key=lambda item: (_mtime(item[1]), item[1].name))
    return OutboxListing([_summarise(kind, Path(entry.path)) for kind, entry in newest], total)


def _summarise(kind: str, path: Path) -> OutboxEntry:
    try:
        stat = path.stat()
    except OSError as exc:
        return OutboxEntry(kind, path.name, datetime.fromtimestamp(0, UTC), 0, "", "", "", None, str(exc))
    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    try:
        if kind == "email":
            with path.open("rb") as handle:
                headers = BytesParser(policy=policy.default).parse(handle, headersonly=True)
            return OutboxEntry(
                kind,
                path.name,
                modified,
                stat.st_size,
                str(headers.get("Subject", "")),
                str(headers.get("From", "")),
                str(headers.get("To", "")),
                _str_or_none(headers.get("X-Tidings-Campaign")),
            )
        post = read_post(path)
        return OutboxEntry(
            kind,
            path.name,
            modified,
            stat.st_size,
            str(post.get("text", "")),
            str(post.get("channel", "")),
            "",
            _str_or_none(post.get("campaign")),
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return OutboxEntry(kind, path.name, modified, stat.st_size, "", "", "", None, f"unreadable: {exc}")


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def read_email(path: Path) -> OutboxEmail:
    """Parse one ``.eml`` file; a part that cannot be decoded is shown as missing, not as an error page."""
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, MimeMessage)
    return OutboxEmail(
        name=path.name,
        subject=str(message.get("Subject", "")),
        sender=str(message.get("From", "")),
        recipient=str(message.get("To", "")),
        date=str(message.get("Date", "")),
        html=_part(message, "html"),
        text=_part(message, "plain"),
        headers=[(name, str(value)) for name, value in message.items()],
    )


def _part(message: MimeMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_subtype() != subtype:
        return None
    try:
        content = body.get_content()
    except (LookupError, ValueError):
        return None
    return content if isinstance(content, str) else None


def read_post(path: Path) -> dict[str, Any]:
    """One ``.json`` post; a file that is not a JSON object is refused with ValueError."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document
