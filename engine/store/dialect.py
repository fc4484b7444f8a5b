"""The one place that knows SQLite's and PostgreSQL's ``INSERT … ON CONFLICT`` apart.

Both dialects spell upserts the same way in SQLAlchemy (``on_conflict_do_nothing`` /
``on_conflict_do_update``) but through their own ``insert`` constructs; every idempotent write
of the engine (outbox rows, enrolments, posts, coupons, suppressions, feedback events) asks
this module for the right one instead of choosing it again.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

UpsertInsert = postgresql.Insert | sqlite.Insert


def insert_for(conn: Connection, table: Table) -> UpsertInsert:
    """``INSERT`` into ``table`` with the dialect's ``ON CONFLICT`` support (PostgreSQL or SQLite)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
