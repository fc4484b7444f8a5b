"""The fire ledger: every trigger fire the leader makes is written down before it is planned.

A fire is ``planning`` from the moment it is recorded until the plan that completes it
commits: :func:`finish` runs inside the plan's own transaction (through the planner's fence
hook), so a fire is ``done`` exactly when its rows exist. A leader killed in between leaves
it ``planning``, and the next leader (or this one, on its next tick) fires it again; firing
is idempotent, so what the first attempt planned is not planned twice. A fire that can never
succeed (its campaign left the workspace, its occurrence no longer parses) is ``failed`` with
the reason, and stays out of the way.

The ledger also answers whether a scheduled occurrence was fired at all
(:func:`recorded`): APScheduler moves a cron job's next run time before the fire runs, so a
crash in that instant loses the fire; the next leader looks for such gaps.

One row per (campaign, occurrence): firing the same occurrence again (a catch-up after a
restart, ``tidings trigger`` run twice) reuses it, with the new term's epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from engine.store import write_transaction
from engine.store.models import FireRecord, FireState

FIRE: Table = FireRecord.__table__  # type: ignore[attr-defined]
Fence = Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A fire recorded but never completed."""

    id: int
    campaign_id: str
    occurrence: str
    epoch: int
    started_at: datetime


def begin(
    engine: Engine, campaign_id: str, occurrence: str, *, epoch: int, now: datetime, fence: Fence
) -> int:
    """Record that ``occurrence`` of ``campaign_id`` is being fired in term ``epoch``; returns its id.

    ``fence`` runs last in the same transaction (:meth:`engine.leadership.Leadership.fence`): a
    daemon that lost the lead records nothing.
    """
    values = {
        "epoch": epoch,
        "state": FireState.planning.value,
        "started_at": now,
        "finished_at": None,
        "error": None,
    }
    with write_transaction(engine) as conn:
        found = conn.execute(
            select(FIRE.c.id).where(FIRE.c.campaign_id == campaign_id, FIRE.c.occurrence == occurrence)
        ).scalar()
        if found is None:
            found = conn.execute(
                insert(FIRE)
                .values(campaign_id=campaign_id, occurrence=occurrence, **values)
                .returning(FIRE.c.id)
            ).scalar_one()
        else:
            conn.execute(update(FIRE).where(FIRE.c.id == found).values(**values))
        fence(conn)
    return int(found)


def finish(conn: Connection, record_id: int, *, now: datetime) -> None:
    """Mark a fire ``done``, inside the transaction that wrote its plan."""
    conn.execute(
        update(FIRE)
        .where(FIRE.c.id == record_id)
        .values(state=FireState.done.value, finished_at=now, error=None)
    )


def fail(engine: Engine, record_id: int, reason: str, *, now: datetime, fence: Fence) -> None:
    """Mark a fire ``failed`` for good (it can never succeed), with the reason."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(FIRE)
            .where(FIRE.c.id == record_id)
            .values(state=FireState.failed.value, finished_at=now, error=" ".join(reason.split())[:1000])
        )
        fence(conn)


def unfinished(
    engine: Engine, *, started_before: datetime | None = None, epoch_below: int | None = None
) -> list[Unfinished]:
    """Fires still ``planning``: those started before ``started_before`` or in a term before
    ``epoch_below`` (a crashed leader's) — either condition; with neither, all of them."""
    query = select(FIRE.c.id, FIRE.c.campaign_id, FIRE.c.occurrence, FIRE.c.epoch, FIRE.c.started_at).where(
        FIRE.c.state == FireState.planning.value
    )
    conditions: list[ColumnElement[bool]] = []
    if started_before is not None:
        conditions.append(FIRE.c.started_at < started_before)
    if epoch_below is not None:
        conditions.append(FIRE.c.epoch < epoch_below)
    if conditions:
        query = query.where(or_(*conditions))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(FIRE.c.started_at, FIRE.c.id)).all()
    return [Unfinished(row.id, row.campaign_id, row.occurrence, row.epoch, row.started_at) for row in rows]


def recorded(engine: Engine, campaign_id: str, occurrences: Collection[str]) -> set[str]:
    """Which of ``occurrences`` of ``campaign_id`` were ever fired (in any state)."""
    if not occurrences:
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            select(FIRE.c.occurrence).where(
                FIRE.c.campaign_id == campaign_id, FIRE.c.occurrence.in_(sorted(occurrences))
            )
        ).scalars()
        return set(rows)


def state_of(engine: Engine, campaign_id: str, occurrence: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(
            select(FIRE.c.state).where(FIRE.c.campaign_id == campaign_id, FIRE.c.occurrence == occurrence)
        ).scalar()
    return str(found) if found is not None else None


__all__ = ["FireState", "Unfinished", "begin", "fail", "finish", "recorded", "state_of", "unfinished"]
