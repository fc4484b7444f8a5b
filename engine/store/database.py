"""Opening the database: one place that knows SQLite from PostgreSQL.

SQLite is tuned for a daemon with several threads (WAL, NORMAL sync, busy timeout), and
every SQLite transaction begins ``IMMEDIATE`` (see ``_begin_sqlite``); long read-only work
opts out with :func:`read_only`. :func:`write_transaction` names the intent where it matters
(the dispatcher's claims) and is a normal transaction on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from engine.errors import StoreUnavailable
from engine.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin (needed for BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_sqlite(conn: Connection) -> None:
    # IMMEDIATE by default: a deferred transaction that reads and then writes fails at once
    # with "database is locked" (no busy wait) when another writer committed in between,
    # because SQLite cannot upgrade its read snapshot. Taking the write lock up front makes
    # writers queue on the busy timeout instead. Readers that want a plain snapshot and no
    # lock say so with ``read_only(conn)``.
    mode = conn.info.pop("begin_mode", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str, *, echo: bool = False, pool_size: int = 20) -> Engine:
    """An engine for ``url``; SQLite files get their folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _tune_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # operators (and tests) can tell the processes apart in pg_stat_activity
        connect_args={"application_name": f"tidings:{os.getpid()}"},
    )


def engine_for(settings: Settings) -> Engine:
    return make_engine(settings.database_url_resolved, pool_size=max(5, settings.concurrency + 4))


def check_reachable(engine: Engine) -> None:
    """Raise :class:`StoreUnavailable` with a one-line reason when the database does not answer."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        raise StoreUnavailable(
            f"database unreachable ({engine.url.render_as_string(hide_password=True)}): {reason}"
        ) from None


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement (SQLite ``BEGIN IMMEDIATE``)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["begin_mode"] = "IMMEDIATE"
        with conn.begin():
            yield conn


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection whose transaction takes no write lock on SQLite (a plain WAL snapshot)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["begin_mode"] = "DEFERRED"
        try:
            yield conn
        finally:
            conn.info.pop("begin_mode", None)  # never leak the mode to the pool's next user


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
