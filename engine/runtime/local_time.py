"""Per-contact local times: a wall-clock date and time in a zone → one UTC instant.

The planner never converts times contact by contact: it asks the store for the few distinct
zones (and countries) in an audience and calls these helpers once per group.

DST: a wall time that does not exist (spring forward, 03:30 on the last Sunday of March in
Tallinn) is sent at the same distance after the gap (04:30 local, the moment a clock that
had not been changed would show 03:30); an ambiguous one (autumn fallback) is the first of
the two. Both follow zoneinfo's ``fold=0`` rule, the same rule cron fires follow
(:class:`engine.workspace.cron.WallClockCron`).

Public holidays are the workspace's rule (:func:`engine.workspace.schedules.is_public_holiday`,
the ``holidays`` package; weekends are not holidays): one check for ``validate``, ``plan`` and
sending.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.workspace.schedules import is_public_holiday

MAX_HOLIDAY_RUN = 31  # no country has a month of consecutive public holidays


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``zone``, as an aware UTC instant."""
    wall = datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone)
    return wall.astimezone(UTC)


def skip_holidays(instant: datetime, zone: ZoneInfo, country: str | None) -> datetime:
    """Move ``instant`` to the first day, at the same local time, that is not a public holiday."""
    local = instant.astimezone(zone)
    day = local.date()
    for _ in range(MAX_HOLIDAY_RUN):
        if not is_public_holiday(country, day):
            break
        day += timedelta(days=1)
    if day == local.date():
        return instant
    return local_instant(day, local.time(), zone)
