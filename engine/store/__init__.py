"""The store: SQLModel tables, database setup and migrations."""

from engine.store.database import (
    check_reachable,
    engine_for,
    make_engine,
    read_only,
    session_scope,
    write_transaction,
)
from engine.store.migrate import current_revision, upgrade
from engine.store.outage import OneLineDatabaseErrors, Reconnecting, connection_lost

__all__ = [
    "OneLineDatabaseErrors",
    "Reconnecting",
    "check_reachable",
    "connection_lost",
    "current_revision",
    "engine_for",
    "make_engine",
    "read_only",
    "session_scope",
    "upgrade",
    "write_transaction",
]
