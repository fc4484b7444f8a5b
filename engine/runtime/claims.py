"""Claiming due outbox rows with a lease, so that two workers never send the same row.

A claim moves rows from ``pending``/``retry`` (due: ``scheduled_for <= now``) to
``claimed`` with ``lease_until`` and ``claimed_by``, in one short write transaction:

* SQLite: ``BEGIN IMMEDIATE`` (via :func:`engine.store.write_transaction`) takes the
  write lock before the SELECT, so two claimers serialise instead of both reading
  the same pending rows; then ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING id``.
* PostgreSQL: the same statement with ``FOR UPDATE SKIP LOCKED`` in the subquery, so
  concurrent claimers skip each other's rows instead of waiting or double-claiming.

A row whose lease expired while ``claimed`` belongs to a worker that crashed (or hung):
it is claimable again. That is the only way a message can be sent twice, and the
dispatcher bounds it by its concurrency (see DESIGN.md "Delivery semantics").

The same code claims ``delivery`` (email) and ``post`` (social) rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.engine import Connection, Engine

from engine.store import write_transaction
from engine.store.models import Delivery, DeliveryState, Post

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]

DUE_STATES = (DeliveryState.pending.value, DeliveryState.retry.value)


def _due_condition(table: Table, now: datetime) -> object:
    return or_(
        and_(table.c.state.in_(DUE_STATES), table.c.scheduled_for <= now),
        and_(table.c.state == DeliveryState.claimed.value, table.c.lease_until < now),
    )


def claim_due(
    engine: Engine,
    *,
    now: datetime,
    limit: int,
    lease_seconds: float,
    worker_id: str,
    campaigns: Collection[str] | None = None,
    table: Table = DELIVERY,
    ids: Sequence[int] | None = None,
    occurrence: str | None = None,
) -> list[int]:
    """Claim up to ``limit`` due rows (oldest first) for ``worker_id``; returns their ids.

    ``campaigns`` limits the claim to those campaign ids (the dispatcher passes the
    campaigns that may send now, so rows of paused or draft campaigns stay pending,
    untouched). ``ids`` and ``occurrence`` limit it further (``trigger --wait`` sends only
    the occurrence it fired).
    """
    if limit <= 0 or (campaigns is not None and not campaigns) or (ids is not None and not ids):
        return []
    lease_until = now + timedelta(seconds=lease_seconds)
    candidates = select(table.c.id).where(_due_condition(table, now))  # type: ignore[arg-type]
    if campaigns is not None:
        candidates = candidates.where(table.c.campaign_id.in_(sorted(campaigns)))
    if ids is not None:
        candidates = candidates.where(table.c.id.in_(list(ids)))
    if occurrence is not None:
        candidates = candidates.where(table.c.occurrence == occurrence)
    candidates = candidates.order_by(table.c.scheduled_for, table.c.id).limit(limit)
    if engine.dialect.name != "sqlite":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(table)
        .where(table.c.id.in_(candidates.scalar_subquery()))
        .values(
            state=DeliveryState.claimed.value,
            lease_until=lease_until,
            claimed_by=worker_id,
            updated_at=now,
        )
        .returning(table.c.id)
    )
    with write_transaction(engine) as conn:
        claimed = [row[0] for row in conn.execute(statement)]
    return sorted(claimed)


def release(
    conn: Connection,
    table: Table,
    rows: Sequence[tuple[int, datetime, str | None]],
    *,
    worker_id: str,
) -> int:
    """Give claimed rows back as ``pending``: ``(id, scheduled_for, reason)`` each, in one executemany.

    Only rows still claimed by ``worker_id`` change, so a worker whose lease ran out
    cannot undo the claim of the worker that took the row over.
    """
    if not rows:
        return 0
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.state == DeliveryState.claimed.value,
            table.c.claimed_by == worker_id,
        )
        .values(
            state=DeliveryState.pending.value,
            lease_until=None,
            claimed_by=None,
            scheduled_for=bindparam("b_when"),
            reason=bindparam("b_reason"),
        )
    )
    params = [{"b_id": row_id, "b_when": when, "b_reason": reason} for row_id, when, reason in rows]
    result = conn.execute(statement, params)
    return result.rowcount or 0
