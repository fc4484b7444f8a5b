"""``fire``: the one entry point that turns a trigger occurrence into outbox rows.

The daemon's APScheduler jobs, ``tidings trigger`` and ``tidings simulate`` all call
:func:`fire`, so a simulated season is the daemon on another clock, not a second
implementation (DESIGN.md "Time"). Firing is idempotent: the planner writes rows keyed
by (campaign, step, contact, occurrence), so firing the same occurrence twice — a
restart, a DST double fire, two schedulers racing, ``trigger`` run again — adds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.engine import Connection, Engine

from engine.clock import Clock
from engine.runtime.occurrences import Occurrence, OccurrenceError, current_occurrence, occurrence_from_key
from engine.runtime.planner import PlanStats, plan_occurrence
from engine.settings import Settings
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign

log = logging.getLogger(__name__)


def resolve_occurrence(
    workspace: Workspace,
    campaign: Campaign,
    occurrence: Occurrence | str | None,
    *,
    clock: Clock,
    settings: Settings,
) -> Occurrence:
    """An :class:`Occurrence` from itself, its key (as daemon jobs carry it), or None for the current one."""
    schedules = workspace.schedules
    if isinstance(occurrence, Occurrence):
        return occurrence
    if occurrence is None:
        return current_occurrence(campaign, clock.now(), schedules, default_zone=settings.zone)
    return occurrence_from_key(campaign, occurrence, schedules, default_zone=settings.zone)


def fire(
    engine: Engine,
    workspace: Workspace,
    campaign: Campaign | str,
    occurrence: Occurrence | str | None,
    *,
    clock: Clock,
    settings: Settings,
    due_now: bool = False,
    fence: Callable[[Connection], None] | None = None,
) -> PlanStats:
    """Plan ``occurrence`` of ``campaign`` (an object or its id); ``due_now``: every row due at once.

    ``fence`` (the daemon's leadership check) runs last in the plan's transaction; see
    :func:`~engine.runtime.planner.plan_occurrence`.

    Raises :class:`~engine.runtime.occurrences.OccurrenceError` for a key that is not one of
    the campaign's occurrences, and ``KeyError`` for an unknown campaign id.
    """
    if isinstance(campaign, str):
        campaign = workspace.campaign(campaign)
    if campaign.trigger.event is not None and occurrence is None:
        raise OccurrenceError(
            f"campaign {campaign.key} is triggered by {campaign.trigger.event.type} events; "
            "it enrols contacts as those events arrive"
        )
    resolved = resolve_occurrence(workspace, campaign, occurrence, clock=clock, settings=settings)
    stats = plan_occurrence(
        engine, workspace, campaign, resolved, clock=clock, settings=settings, due_now=due_now, fence=fence
    )
    log.info(
        "fired %s occurrence %s: %d new %s%s",
        campaign.key,
        resolved.key,
        stats.created,
        stats.mode,
        f" (skipped: {stats.skipped})" if stats.skipped else "",
        extra={"campaign": campaign.key, "occurrence": resolved.key, "new_rows": stats.created},
    )
    return stats
