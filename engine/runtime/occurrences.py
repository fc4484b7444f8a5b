"""Occurrences: which fires of a campaign's trigger are due, and the key each fire is known by.

The occurrence key is the last part of every outbox idempotency key, so it must name the
*fire*, not the moment a process happened to notice it:

============  ===========================================  ===================================
trigger       key                                          example
============  ===========================================  ===================================
``at``        wall-clock date-time (campaign zone, or      ``2027-01-04T10:00``
``schedule``  each contact's for ``local_time``: one key
              covers every zone)
``calendar``  named date + offset @ resulting date         ``christmas-7d@2026-12-18``
              per-contact dates: name + offset @ the date  ``shipping_cutoff-7d@2026-12-24``
              the season's cutoffs count towards
              (``deliver_before``)
``event``     the ``shop_event`` id                        ``1842``
manual        ``tidings trigger`` with nothing due         ``manual-2026-12-14``
============  ===========================================  ===================================

Per-contact keys name their season so that a campaign id can be reused next year: with the
schedules moved to 2027 the keys become ``shipping_cutoff-7d@2027-12-24`` and send again, while
re-running this season still adds nothing.

Fire times come from APScheduler 3.11 trigger objects (:func:`campaign_triggers`), whose
``get_next_fire_time(previous, now)`` is pure: the daemon schedules these very objects and
``simulate`` walks them over simulated time with :func:`due_occurrences`, so both agree.
Cron lines run on the campaign zone's wall clock (:class:`engine.workspace.cron.WallClockCron`;
APScheduler's own CronTrigger skips fires around spring-forward changes).

``local_time`` triggers fire once, early enough for the earliest zone on Earth (UTC+14);
the planner then gives each contact the instant of that wall time in their own zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from engine.errors import TidingsError
from engine.runtime.local_time import local_instant
from engine.workspace.cron import cron_trigger
from engine.workspace.models import AtTrigger, CalendarTrigger, Campaign, EventTrigger, ScheduleTrigger
from engine.workspace.schedules import PER_CONTACT_DATES, Cutoff, Schedules

#: The zone whose wall clock is first to show any given time: local_time triggers fire on it.
EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")
KEY_FORMAT = "%Y-%m-%dT%H:%M"
_LOOKBACKS = (timedelta(days=1), timedelta(days=8), timedelta(days=32), timedelta(days=367))
_CALENDAR_KEY = re.compile(r"^(?P<name>[\w.-]+?)(?P<offset>[+-]\d+)d(?:@(?P<day>\d{4}-\d{2}-\d{2}))?$")

OccurrenceKind = Literal["at", "schedule", "calendar", "event", "manual"]


class OccurrenceError(TidingsError):
    """An occurrence key that does not belong to the campaign's trigger."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One fire of a campaign's trigger.

    ``fire_at`` is when the daemon fires it (UTC). ``local`` is the wall-clock time of
    ``at``/``schedule`` fires (in each contact's zone when ``local_time``). Calendar fires
    carry the named date, the offset in days and, for global dates, the resulting ``day``;
    per-contact dates carry their ``season`` (the date the cutoffs count towards).
    """

    key: str
    kind: OccurrenceKind
    fire_at: datetime
    local: datetime | None = None
    local_time: bool = False
    date_name: str | None = None
    offset_days: int | None = None
    day: date | None = None
    at: time | None = None
    event_id: int | None = None
    season: date | None = None

    @property
    def per_contact_date(self) -> bool:
        return self.date_name in PER_CONTACT_DATES

    @property
    def trigger_date(self) -> date | None:
        """The named date a global calendar fire counts from (``christmas-7d@2026-12-18`` → Dec 25)."""
        if self.day is None or self.offset_days is None:
            return None
        return self.day - timedelta(days=self.offset_days)


@dataclass(frozen=True, slots=True)
class FireTrigger:
    """An APScheduler trigger and how to name the occurrence of each of its fire times."""

    trigger: BaseTrigger
    occurrence: Callable[[datetime], Occurrence] = field(compare=False)


def campaign_zone(campaign: Campaign, default_zone: ZoneInfo) -> ZoneInfo:
    """The zone of the campaign's ``at``, cron and window: its own, else ``TIDINGS_TIMEZONE``."""
    return campaign.zone if campaign.timezone else default_zone


def is_active(campaign: Campaign) -> bool:
    return campaign.status.value == "active"


def cutoff_day(cutoff: Cutoff, offset_days: int) -> date:
    """The cutoff's date in its own zone, moved by whole days."""
    return cutoff.date + timedelta(days=offset_days)


def _wall_key(moment: datetime) -> str:
    return moment.strftime(KEY_FORMAT)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, second=0, microsecond=0)


def _offset_key(name: str, offset_days: int, day: date) -> str:
    return f"{name}{offset_days:+d}d@{day.isoformat()}"


def campaign_triggers(
    campaign: Campaign, schedules: Schedules, *, years: range, default_zone: ZoneInfo
) -> list[FireTrigger]:
    """The APScheduler triggers that fire ``campaign`` (none for event triggers).

    ``years`` bounds the calendar dates written as ``MM-DD`` (every year); the daemon asks
    for this year and the next and reloads at the turn of the year.
    """
    spec = campaign.trigger.spec
    zone = campaign_zone(campaign, default_zone)
    if isinstance(spec, EventTrigger):
        return []
    fire_zone = EARLIEST_ZONE if spec.local_time else zone
    local = spec.local_time
    if isinstance(spec, AtTrigger):
        wall = _naive(spec.time)

        def at_occurrence(fire: datetime) -> Occurrence:
            return Occurrence(_wall_key(wall), "at", fire.astimezone(UTC), local=wall, local_time=local)

        return [FireTrigger(DateTrigger(run_date=wall, timezone=fire_zone), at_occurrence)]
    if isinstance(spec, ScheduleTrigger):

        def cron_occurrence(fire: datetime) -> Occurrence:
            # A fire the trigger made carries its nominal wall time (02:30 even where that is 03:30).
            wall = _naive(fire if fire.tzinfo is fire_zone else fire.astimezone(fire_zone))
            return Occurrence(_wall_key(wall), "schedule", fire.astimezone(UTC), local=wall, local_time=local)

        return [FireTrigger(cron_trigger(spec.cron, fire_zone), cron_occurrence)]
    return _calendar_triggers(spec, schedules, years, fire_zone)


def _calendar_triggers(
    spec: CalendarTrigger, schedules: Schedules, years: range, fire_zone: ZoneInfo
) -> list[FireTrigger]:
    name = str(spec.date)
    at = spec.at
    local = spec.local_time
    fires: list[FireTrigger] = []
    for offset in spec.offsets:
        days = int(offset.whole_days)
        if name in PER_CONTACT_DATES:
            rows = schedules.cutoff_rows()
            shipping = schedules.shipping
            if not rows or shipping is None:
                continue
            season = shipping.deliver_before
            first = min(local_instant(cutoff_day(row, days), at, fire_zone) for row in rows)
            occurrence = Occurrence(
                _offset_key(name, days, season),
                "calendar",
                first,
                local_time=local,
                date_name=name,
                offset_days=days,
                at=at,
                season=season,
            )
            fires.append(FireTrigger(DateTrigger(run_date=first), _fixed(occurrence)))
            continue
        for year in years:
            base = schedules.named_date(name, year)
            if base is None:
                continue
            day = base + timedelta(days=days)
            fire = local_instant(day, at, fire_zone)
            occurrence = Occurrence(
                _offset_key(name, days, day),
                "calendar",
                fire,
                local=datetime.combine(day, at),
                local_time=local,
                date_name=name,
                offset_days=days,
                day=day,
                at=at,
            )
            if all(f.occurrence(fire).key != occurrence.key for f in fires):
                fires.append(FireTrigger(DateTrigger(run_date=fire), _fixed(occurrence)))
    return fires


def _fixed(occurrence: Occurrence) -> Callable[[datetime], Occurrence]:
    def named(_fire: datetime) -> Occurrence:
        return occurrence

    return named


def _walk(fire: FireTrigger, since: datetime, until: datetime) -> Iterator[Occurrence]:
    """Fires in ``[since, until]``, exactly as the daemon's scheduler would compute them."""
    previous: datetime | None = None
    now = since
    while True:
        moment = fire.trigger.get_next_fire_time(previous, now)
        if moment is None or moment > until:
            return
        if moment >= since:
            yield fire.occurrence(moment)
        previous, now = moment, moment


def _in_window(campaign: Campaign, occurrence: Occurrence, zone: ZoneInfo) -> bool:
    window = campaign.window
    if window is None or occurrence.per_contact_date:
        return True  # per-contact dates are checked group by group in the planner
    local = occurrence.local
    day = local.date() if local is not None else occurrence.fire_at.astimezone(zone).date()
    return window.contains(day)


def due_occurrences(
    campaign: Campaign,
    schedules: Schedules,
    since: datetime,
    until: datetime,
    *,
    default_zone: ZoneInfo,
    include_inactive: bool = False,
) -> list[Occurrence]:
    """The campaign's occurrences firing in ``[since, until]``, in order, inside its window.

    Paused and draft campaigns have none unless ``include_inactive`` (``plan`` shows them).
    """
    if not include_inactive and not is_active(campaign):
        return []
    zone = campaign_zone(campaign, default_zone)
    years = range(since.year - 1, until.year + 2)
    found: dict[str, Occurrence] = {}
    for fire in campaign_triggers(campaign, schedules, years=years, default_zone=default_zone):
        for occurrence in _walk(fire, since, until):
            if _in_window(campaign, occurrence, zone):
                found.setdefault(occurrence.key, occurrence)
    return sorted(found.values(), key=lambda o: (o.fire_at, o.key))


def manual_occurrence(
    campaign: Campaign, now: datetime, *, default_zone: ZoneInfo, schedules: Schedules | None = None
) -> Occurrence:
    """``manual-DATE``: today in the campaign zone, so triggering twice a day is idempotent.

    A calendar campaign's manual send still counts from its date: a per-contact date (each
    contact's own cutoff), or the global date's next day from today (``trigger_date``), so its
    messages read as they would on schedule.
    """
    today = now.astimezone(campaign_zone(campaign, default_zone)).date()
    key = f"manual-{today.isoformat()}"
    calendar = campaign.trigger.calendar
    if calendar is None:
        return Occurrence(key, "manual", now.astimezone(UTC))
    name = str(calendar.date)
    if name in PER_CONTACT_DATES:
        season = schedules.shipping.deliver_before if schedules is not None and schedules.shipping else None
        return Occurrence(key, "manual", now.astimezone(UTC), date_name=name, offset_days=0, season=season)
    upcoming = [
        d
        for year in (today.year, today.year + 1)
        if schedules is not None
        for d in [schedules.named_date(name, year)]
        if d is not None and d >= today
    ]
    day = upcoming[0] if upcoming else None
    return Occurrence(key, "manual", now.astimezone(UTC), date_name=name, offset_days=0, day=day)


def current_occurrence(
    campaign: Campaign, now: datetime, schedules: Schedules, *, default_zone: ZoneInfo
) -> Occurrence:
    """What ``tidings trigger`` fires: the ``at`` time, the latest fire not after ``now``, else manual."""
    kind = campaign.trigger.kind
    if kind == "at":
        years = range(now.year, now.year + 1)
        (only,) = campaign_triggers(campaign, schedules, years=years, default_zone=default_zone)
        moment = only.trigger.get_next_fire_time(None, now)
        assert moment is not None
        return only.occurrence(moment)
    if kind in {"schedule", "calendar"}:
        for lookback in _LOOKBACKS:
            found = due_occurrences(
                campaign, schedules, now - lookback, now, default_zone=default_zone, include_inactive=True
            )
            if found:
                return found[-1]
    return manual_occurrence(campaign, now, default_zone=default_zone, schedules=schedules)


def event_occurrence(event_id: int, occurred_at: datetime, *, once: bool = False) -> Occurrence:
    """An event trigger's occurrence: the event id, or ``once`` when a contact is enrolled only once."""
    key = "once" if once else str(event_id)
    return Occurrence(key, "event", occurred_at.astimezone(UTC), event_id=event_id)


def occurrence_from_key(
    campaign: Campaign, key: str, schedules: Schedules, *, default_zone: ZoneInfo
) -> Occurrence:
    """Rebuild an occurrence from its key (the daemon's jobs carry plain strings)."""
    if key.startswith("manual-"):
        try:
            day = date.fromisoformat(key.removeprefix("manual-"))
        except ValueError:
            raise OccurrenceError(f"{key!r} is not an occurrence of campaign {campaign.key}") from None
        return Occurrence(key, "manual", local_instant(day, time(0), campaign_zone(campaign, default_zone)))
    spec = campaign.trigger.spec
    if isinstance(spec, AtTrigger | ScheduleTrigger):
        try:
            wall = datetime.strptime(key, KEY_FORMAT)
        except ValueError:
            raise OccurrenceError(f"{key!r} is not an occurrence of campaign {campaign.key}") from None
        fire_zone = EARLIEST_ZONE if spec.local_time else campaign_zone(campaign, default_zone)
        fire = wall.replace(tzinfo=fire_zone).astimezone(UTC)
        kind: OccurrenceKind = "at" if isinstance(spec, AtTrigger) else "schedule"
        return Occurrence(key, kind, fire, local=wall, local_time=spec.local_time)
    if isinstance(spec, CalendarTrigger):
        match = _CALENDAR_KEY.match(key)
        if match and match.group("day"):
            day = date.fromisoformat(match.group("day"))
            years = range(day.year - 1, day.year + 2)
            for candidate in campaign_triggers(campaign, schedules, years=years, default_zone=default_zone):
                moment = candidate.trigger.get_next_fire_time(None, datetime.min.replace(tzinfo=UTC))
                occurrence = candidate.occurrence(moment) if moment is not None else None
                if occurrence is not None and occurrence.key == key:
                    return occurrence
    raise OccurrenceError(f"{key!r} is not an occurrence of campaign {campaign.key}")


def legacy_occurrence(
    campaign: Campaign, key: str, schedules: Schedules, default_zone: ZoneInfo
) -> Occurrence:
    """An occurrence from its key, including a per-contact key written before keys named their
    season (``shipping_cutoff-7d``): that one is read as this season's occurrence with that offset."""
    try:
        return occurrence_from_key(campaign, key, schedules, default_zone=default_zone)
    except OccurrenceError:
        match = _CALENDAR_KEY.match(key)
        if match is None or match.group("day") or match.group("name") not in PER_CONTACT_DATES:
            raise
        years = range(2000, 2100)
        for candidate in campaign_triggers(campaign, schedules, years=years, default_zone=default_zone):
            moment = candidate.trigger.get_next_fire_time(None, datetime.min.replace(tzinfo=UTC))
            occurrence = candidate.occurrence(moment) if moment is not None else None
            if occurrence is not None and occurrence.key.split("@", 1)[0] == key:
                return occurrence
        raise


__all__ = [
    "EARLIEST_ZONE",
    "FireTrigger",
    "Occurrence",
    "OccurrenceError",
    "campaign_triggers",
    "campaign_zone",
    "current_occurrence",
    "cutoff_day",
    "due_occurrences",
    "event_occurrence",
    "is_active",
    "legacy_occurrence",
    "manual_occurrence",
    "occurrence_from_key",
]
