"""Losing the database for a while: one log line per incident, a reconnect, no traceback.

A PostgreSQL restart, a failover or a network blip breaks every pooled connection at once.
The engine's pool checks a connection before lending it (``pool_pre_ping``, see
:func:`~engine.store.database.make_engine`), so once the server answers again the next
unit of work simply gets a fresh one. What remains is to say so once and to wait:

* :class:`Reconnecting` runs the daemon's periodic work (a tick, a drain, a sweep). When the
  work fails because the connection is gone it logs one line for the incident —
  ``database connection lost: <reason>; retrying in 1 s`` — waits (1 s, doubling up to 30 s,
  ended early by a stop event), tries again, and when the work goes through logs one line
  more: ``database connection back after 12 s``. Anything else the work raises is not its
  business and propagates unchanged;
* :class:`OneLineDatabaseErrors` is a logging filter for what other code logs with a traceback
  (APScheduler's job store, the web server): a record whose exception is a lost connection
  becomes one line with the reason and no traceback.

A lost connection is told from other database errors by what SQLAlchemy and the driver say:
SQLAlchemy marks an error on a connection it had to throw away (``connection_invalidated``);
psycopg raises ``OperationalError``/``InterfaceError`` when it cannot connect or the server
went away; SQLAlchemy raises ``DisconnectionError`` from the pool. A constraint violation, a
bad query or SQLite's "database is locked" are not connection losses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError

log = logging.getLogger("tidings.store")

T = TypeVar("T")
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
_DRIVER_LOSSES = ("OperationalError", "InterfaceError")
_SQLITE_NOT_LOST = ("database is locked", "database table is locked")


def connection_lost(exc: BaseException) -> bool:
    """Is ``exc`` (or what caused it) the database connection going away, rather than a bad statement?"""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DisconnectionError):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            original = current.orig
            if original is not None and type(original).__name__ in _DRIVER_LOSSES:
                module = type(original).__module__
                if module.startswith("sqlite3"):
                    return not any(text in str(original) for text in _SQLITE_NOT_LOST)
                return True
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """The driver's first line about ``exc`` (``connection refused``, ``server closed the connection``)."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return (lines[0] if lines else type(original).__name__)[:300]


class Reconnecting:
    """Runs one kind of periodic work through database outages (see the module docstring).

    One instance per loop (its incident state is its own); not for concurrent use by
    several threads.

    Example::

        tick = Reconnecting("runtime tick")
        while not stop.is_set():
            tick.run(lambda: advance_and_drain(engine), stop=stop)
            stop.wait(TICK_SECONDS)
    """

    def __init__(
        self,
        name: str,
        *,
        logger: logging.Logger = log,
        first_delay: float = FIRST_DELAY_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.logger = logger
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._clock = clock
        self.lost_at: float | None = None  # monotonic time the current incident began, None when connected
        self.reason: str | None = None
        self.attempts = 0

    @property
    def connected(self) -> bool:
        return self.lost_at is None

    def run(self, work: Callable[[], T], *, stop: threading.Event | None = None) -> T | None:
        """``work()``, retried through connection losses; ``None`` only when ``stop`` is set while waiting."""
        delay = self.first_delay
        while True:
            try:
                result = work()
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                self._lost(exc, delay)
                waiter = stop if stop is not None else threading.Event()
                if waiter.wait(delay):
                    return None
                delay = min(delay * 2, self.max_delay)
                continue
            self._back()
            return result

    def _lost(self, exc: BaseException, delay: float) -> None:
        self.attempts += 1
        if self.lost_at is None:
            self.lost_at = self._clock()
            self.reason = describe(exc)
            self.logger.warning(
                "database connection lost: %s; retrying in %g s (%s)", self.reason, delay, self.name
            )

    def _back(self) -> None:
        if self.lost_at is None:
            return
        took = self._clock() - self.lost_at
        self.logger.info(
            "database connection back after %.0f s and %d retries (%s)", took, self.attempts, self.name
        )
        self.lost_at = None
        self.reason = None
        self.attempts = 0


class OneLineDatabaseErrors(logging.Filter):
    """A logged lost connection as one line: the message, the reason, no traceback.

    Install on the log handler (``engine.logs.configure_logging(one_line=...)``) so that it
    covers every logger, the libraries' included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and connection_lost(exc):
            record.msg = f"{record.getMessage()}: database connection lost: {describe(exc)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True
