"""Consent per channel, with evidence: one row per grant, a withdrawal closes the open row.

EU law (ePrivacy + GDPR; Romania and Estonia want express prior consent for marketing
email) asks a shop to show *when*, *where* (source), *what wording* and *on which legal
basis* a person agreed, and when and how they withdrew. So a grant never overwrites an
older row and a withdrawal never deletes one: the history is the evidence.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from engine.store.models import Consent


def has_open_consent(conn: Connection, contact_id: int, channel: str) -> bool:
    table = Consent.__table__  # type: ignore[attr-defined]
    row = conn.execute(
        select(table.c.id).where(
            table.c.contact_id == contact_id, table.c.channel == channel, table.c.withdrawn_at.is_(None)
        )
    ).first()
    return row is not None


def grant_consent(
    conn: Connection,
    contact_id: int,
    channel: str,
    *,
    at: datetime,
    source: str,
    wording_version: str | None = None,
    legal_basis: str = "consent",
) -> bool:
    """Record a grant; a no-op (False) while an open grant for the channel exists, so repeats add no rows."""
    if has_open_consent(conn, contact_id, channel):
        return False
    conn.execute(
        insert(Consent.__table__),  # type: ignore[attr-defined]
        [
            {
                "contact_id": contact_id,
                "channel": channel,
                "granted_at": at,
                "source": source,
                "wording_version": wording_version,
                "legal_basis": legal_basis,
            }
        ],
    )
    return True


def withdraw_consent(conn: Connection, contact_id: int, channel: str, *, at: datetime, source: str) -> int:
    """Close every open grant for the channel, recording when and through what; returns rows closed."""
    table = Consent.__table__  # type: ignore[attr-defined]
    result = conn.execute(
        update(table)
        .where(table.c.contact_id == contact_id, table.c.channel == channel, table.c.withdrawn_at.is_(None))
        .values(withdrawn_at=at, withdrawn_source=source)
    )
    return int(result.rowcount or 0)
