"""Per-contact local times: a wall-clock date and time in a zone → one UTC instant.

The planner never converts times contact by contact: it asks the store for the few distinct
zones (and countries) in an audience and calls these helpers once per group.

DST: a wall time that does not exist (spring forward, 03:30 on the last Sunday of March in
Tallinn) is sent at the same distance after the gap (04:30 local, the moment a clock that
had not been changed would show 03:30); an ambiguous one (autumn fallback) is the first of
the two. Both follow zoneinfo's ``fold=0`` rule, the same rule APScheduler uses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

MAX_HOLIDAY_RUN = 31  # no country has a month of consecutive public holidays


def zone_or(name: str | None, default: ZoneInfo) -> ZoneInfo:
    """The contact's zone, or ``default`` when it is missing or not an IANA name."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``zone``, as an aware UTC instant."""
    wall = datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone)
    return wall.astimezone(UTC)


@lru_cache(maxsize=256)
def _calendar(country: str, year: int) -> holidays.HolidayBase | None:
    try:
        return holidays.country_holidays(country.upper(), years=[year, year + 1])
    except (NotImplementedError, KeyError):
        return None


def is_public_holiday(day: date, country: str | None) -> bool:
    """Whether ``day`` is a public holiday in ``country`` (weekends are not holidays)."""
    if not country:
        return False
    calendar = _calendar(country, day.year)
    return calendar is not None and day in calendar


def skip_holidays(instant: datetime, zone: ZoneInfo, country: str | None) -> datetime:
    """Move ``instant`` to the first day, at the same local time, that is not a public holiday."""
    local = instant.astimezone(zone)
    day = local.date()
    for _ in range(MAX_HOLIDAY_RUN):
        if not is_public_holiday(day, country):
            break
        day += timedelta(days=1)
    if day == local.date():
        return instant
    return local_instant(day, local.time(), zone)
