"""Crontab lines → APScheduler 3.11 ``CronTrigger``, converting the weekday field deliberately.

Marketers write crontab: ``0 10 * * MON-FRI``, where weekday 0 and 7 are Sunday and 1 is
Monday. APScheduler's ``day_of_week`` counts 0 = Monday (even through ``from_crontab``), so
passing numbers through would send Monday's email on Tuesday. Steps differ as well: crontab's
``*/2`` is Sun, Tue, Thu, Sat; APScheduler's is Mon, Wed, Fri, Sun. So the weekday field is
expanded to the set of days crontab means and handed over as explicit names (``mon,wed``).

Fires follow the zone's wall clock, as crontab does: APScheduler 3.11's ``CronTrigger`` computes
the next fire in aware time and skips a day around a spring-forward change (``0 0 * * *`` in
Europe/Tallinn has no fire on 2027-03-29; ``0 0 1 * *`` in America/Sao_Paulo loses 2018-12-01).
:class:`WallClockCron` lets APScheduler match the fields on naive wall-clock time (in UTC, which
has no changes) and only then places the wall time in the zone: a time that does not exist
(spring forward) is sent at the same distance after the gap, an ambiguous one (autumn) once, at
its first occurrence — zoneinfo's ``fold=0``, the rule the planner uses for every local time.

One more difference is refused rather than converted: when both day-of-month and weekday are
restricted, crontab fires when *either* matches and APScheduler when *both* do. That is rarely
what anyone means, so it is an error that asks for one of the two.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: index = number
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
FIELD_NAMES = ("minute", "hour", "day of month", "month", "weekday")
_TOKEN = re.compile(r"^(\*|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/\d+)?$")


class CronError(ValueError):
    """A crontab line that is not five valid fields."""


class WallClockCron(BaseTrigger):
    """A crontab line fired on a zone's wall clock (see the module docstring). Picklable, so the
    daemon's persistent job store keeps it like any APScheduler trigger."""

    def __init__(self, fields: CronTrigger, zone: tzinfo) -> None:
        self.fields = fields  # matched on naive wall time, expressed in UTC
        self.zone = zone

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        wall_now = _wall(now, self.zone)
        wall_previous = _wall(previous_fire_time, self.zone) if previous_fire_time is not None else None
        while True:
            wall = self.fields.get_next_fire_time(wall_previous, wall_now)
            if wall is None:
                return None
            # fold=0: a time in a gap is the instant after it, an overlap fires once (its first time).
            # The wall fields stay as written (02:30 on a spring-forward day is the instant 03:30
            # shows), so the occurrence keeps its nominal wall-clock name.
            placed = wall.replace(tzinfo=self.zone, fold=0)
            # Compared as instants: aware datetimes sharing a tzinfo compare by their wall fields.
            if previous_fire_time is None or placed.astimezone(UTC) > previous_fire_time.astimezone(UTC):
                return placed
            # Two wall times on one instant (an hourly job's 02:15 in the gap and its 03:15): once.
            wall_previous = wall_now = wall

    def __str__(self) -> str:
        return f"wall-clock {self.fields} in {self.zone}"

    def __repr__(self) -> str:
        return f"<WallClockCron ({self.fields!r}, zone={self.zone!s})>"


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    """The wall-clock time ``moment`` shows in ``zone``, as a UTC-labelled datetime."""
    return moment.astimezone(zone).replace(tzinfo=UTC, fold=0)


def check_cron(spec: str) -> None:
    """Raise :class:`CronError` with a message naming the bad field."""
    cron_trigger(spec, "UTC")


def cron_trigger(spec: str, timezone: str | tzinfo) -> WallClockCron:
    """A wall-clock trigger for a crontab line, in an explicit zone (never the host's).

    >>> cron_trigger("0 10 * * MON", "Europe/Tallinn")  # doctest: +SKIP
    <WallClockCron (<CronTrigger (month='*', day='*', day_of_week='mon', hour='10', minute='0'…)>
    """
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    if not isinstance(spec, str):
        raise CronError(f'expected a crontab line such as "0 10 * * MON", got {spec!r}')
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(
            f'expected 5 cron fields (minute hour day-of-month month weekday) such as "0 10 * * MON", '
            f"got {len(fields)} in {spec!r}"
        )
    minute, hour, day, month, weekday = fields
    for name, value in zip(FIELD_NAMES, fields, strict=True):
        for part in value.split(","):
            if not _TOKEN.match(part):
                raise CronError(f"cron {name} field {value!r} is not valid")
    if day != "*" and weekday != "*":
        raise CronError(
            f"cron {spec!r} restricts both the day of month and the weekday; crontab would fire when either "
            "matches: use one of the two"
        )
    days = weekday_field(weekday)
    try:
        fields = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month.lower(),
            day_of_week=days,
            timezone=UTC,
        )
    except ValueError as exc:
        raise CronError(f"cron {spec!r} is not valid: {exc}") from None
    return WallClockCron(fields, zone)


def weekday_field(field: str) -> str:
    """Translate a crontab weekday field to APScheduler's: ``*`` stays, anything else becomes the
    explicit comma-separated day names crontab means (``1-5`` → ``mon,tue,wed,thu,fri``)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        days |= _weekday_part(part)
    return ",".join(WEEKDAY_NAMES[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def _weekday_part(part: str) -> set[int]:
    base, _, step_text = part.partition("/")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise CronError(f"cron weekday step in {part!r} must be at least 1")
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        left, right = base.split("-", 1)
        first, last = _weekday(left), _weekday(right)
        if last == 0 and first > 0:
            last = 7  # FRI-SUN, 5-7 and 5-0 all mean Friday to Sunday
        if first > last:
            raise CronError(f"cron weekday range {base!r} runs backwards; write e.g. MON-FRI or SAT,SUN")
    else:
        first = last = _weekday(base)
        if step_text:
            last = 7
    return {d % 7 for d in range(first, last + 1, step)}


def _weekday(text: str) -> int:
    lowered = text.lower()
    if lowered in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(lowered)
    if lowered.isdigit() and 0 <= int(lowered) <= 7:
        return int(lowered)
    raise CronError(f"cron weekday {text!r} is not a day: use MON–SUN or 0–7 (0 and 7 are Sunday)")
