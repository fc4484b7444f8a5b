"""Turning stored shop events into flow work, exactly once per event.

Events arrive two ways: pushed through ``POST /events`` (the public app calls
:func:`process_events` with the new ids at once) or written by ``import`` / ``demo-data``
(the daemon's tick and the simulator pick up whatever is due). Either way an event is
handled once: ``shop_event.processed_at`` is set in the same pass that enrols its contact
and wakes the flows waiting for it. Enrolment is idempotent on (campaign, contact,
occurrence) anyway, so a crash between the two only repeats harmless work.

Events older than ``max_age`` when first seen (a backfill of last year's orders, a
daemon that was down for a week) are marked processed without enrolling anyone: a
"welcome" for a gift card redeemed last month is worse than none. Goals and waits still
see them, because those read the event table directly.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from engine.clock import Clock
from engine.runtime import flows
from engine.runtime.enrolment import enrol_for_events
from engine.runtime.occurrences import is_active
from engine.settings import Settings
from engine.store.models import ShopEvent
from engine.workspace.loader import Workspace

log = logging.getLogger(__name__)

EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
DEFAULT_MAX_AGE = timedelta(days=2)
BATCH = 1_000


@dataclass
class PumpStats:
    events: int = 0
    stale: int = 0
    enrolled: int = 0
    #: Events a trigger's ``where`` failed on, by campaign (a named outcome, not only a log line).
    expression_errors: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.events or self.stale)


def process_events(
    engine: Engine, workspace: Workspace, event_ids: list[int], clock: Clock, settings: Settings
) -> PumpStats:
    """Enrol and wake for these (already stored) events, then mark them processed."""
    stats = PumpStats(events=len(event_ids))
    if not event_ids:
        return stats
    enrolling = _of_trigger_types(engine, workspace, event_ids)
    if enrolling:
        enrolled = enrol_for_events(engine, workspace, enrolling, clock, settings)
        stats.enrolled = enrolled.created
        stats.expression_errors.update(enrolled.expression_errors)
    flows.on_events(engine, workspace, event_ids, clock, settings)
    with engine.begin() as conn:
        conn.execute(
            update(EVENT)
            .where(EVENT.c.id.in_(event_ids), EVENT.c.processed_at.is_(None))
            .values(processed_at=clock.now())
        )
    return stats


def trigger_types(workspace: Workspace) -> set[str]:
    """The event types that enrol contacts: those of the active event-triggered campaigns."""
    return {
        str(campaign.trigger.event.type)
        for campaign in workspace.campaigns.values()
        if campaign.trigger.event is not None and is_active(campaign)
    }


def _of_trigger_types(engine: Engine, workspace: Workspace, event_ids: list[int]) -> list[int]:
    """The events some campaign is triggered by; the rest (most of a shop's orders, say) only
    matter to goals and waits, so enrolment need not load their contacts one by one."""
    types = trigger_types(workspace)
    if not types:
        return []
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(EVENT.c.id).where(EVENT.c.id.in_(event_ids), EVENT.c.type.in_(types))
            ).scalars()
        )


def pump_due_events(
    engine: Engine,
    workspace: Workspace,
    clock: Clock,
    settings: Settings,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> PumpStats:
    """Process every unprocessed event that has happened by now, oldest first."""
    total = PumpStats()
    now = clock.now()
    with engine.begin() as conn:
        total.stale = (
            conn.execute(
                update(EVENT)
                .where(EVENT.c.processed_at.is_(None), EVENT.c.occurred_at < now - max_age)
                .values(processed_at=now)
            ).rowcount
            or 0
        )
    if total.stale:
        days = max_age.total_seconds() / 86_400
        log.info(
            "marked %d shop events older than %g days as processed without enrolling anyone",
            total.stale,
            days,
        )
    while True:
        now = clock.now()
        with engine.connect() as conn:
            fresh = list(
                conn.execute(
                    select(EVENT.c.id)
                    .where(EVENT.c.processed_at.is_(None), EVENT.c.occurred_at <= now)
                    .order_by(EVENT.c.occurred_at, EVENT.c.id)
                    .limit(BATCH)
                ).scalars()
            )
        if not fresh:
            return total
        stats = process_events(engine, workspace, fresh, clock, settings)
        total.events += stats.events
        total.enrolled += stats.enrolled
        total.expression_errors.update(stats.expression_errors)
        if len(fresh) < BATCH:
            return total
