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
              per-contact dates: name + offset only        ``shipping_cutoff-7d``
``event``     the ``shop_event`` id                        ``1842``
manual        ``tidings trigger`` with nothing due         ``manual-2026-12-14``
============  ===========================================  ===================================

Fire times come from APScheduler 3.11 trigger objects (:func:`campaign_triggers`), whose
``get_next_fire_time(previous, now)`` is pure: the daemon schedules these very objects and
``simulate`` walks them over simulated time with :func:`due_occurrences`, so both agree.

``local_time`` triggers fire once, early enough for the earliest zone on Earth (UTC+14);
the planner then gives each contact the instant of that wall time in their own zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from engine.errors import TidingsError
from engine.runtime.local_time import local_instant
from engine.workspace.cron import cron_trigger as workspace_cron_trigger

#: The zone whose wall clock is first to show any given time: local_time triggers fire on it.
EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")
#: Named dates that resolve per contact rather than once for everyone.
PER_CONTACT_DATES = frozenset({"shipping_cutoff"})
KEY_FORMAT = "%Y-%m-%dT%H:%M"
_LOOKBACKS = (timedelta(days=1), timedelta(days=8), timedelta(days=32), timedelta(days=367))
_CALENDAR_KEY = re.compile(r"^(?P<name>[\w.-]+?)(?P<offset>[+-]\d+)d(?:@(?P<day>\d{4}-\d{2}-\d{2}))?$")


# --- reading schedules/ (the workspace's models, or the same shape as plain mappings) ---------------


@dataclass(frozen=True, slots=True)
class CutoffRow:
    """One shipping cutoff: order by ``order_by`` (aware) for ``method`` to ``country``."""

    country: str
    method: str
    carrier: str | None
    order_by: datetime
    zone: ZoneInfo


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _shipping(schedules: Any) -> Any:
    return _get(schedules, "shipping") or _get(schedules, "shipping_cutoffs")


def cutoff_rows(schedules: Any) -> list[CutoffRow]:
    """Every shipping cutoff row, with its ``order_by`` made aware in the row's own zone."""
    resolved = getattr(schedules, "cutoff_rows", None)
    if callable(resolved):  # the workspace's Schedules: rows already aware in their zone
        return [CutoffRow(row.country, row.method, row.carrier, row.order_by, row.zone) for row in resolved()]
    rows = []
    for raw in _get(_shipping(schedules), "cutoffs", []) or []:
        zone = ZoneInfo(str(_get(raw, "timezone") or "UTC"))
        order_by = _get(raw, "order_by")
        if isinstance(order_by, str):
            order_by = datetime.fromisoformat(order_by.strip())
        if isinstance(order_by, date) and not isinstance(order_by, datetime):
            order_by = datetime.combine(order_by, time(23, 59))
        if order_by.tzinfo is None:
            order_by = order_by.replace(tzinfo=zone)
        country, method = str(_get(raw, "country")).upper(), str(_get(raw, "method"))
        rows.append(CutoffRow(country, method, _get(raw, "carrier"), order_by, zone))
    return rows


def default_method(schedules: Any) -> str:
    """The method of contacts without a preferred one (their last order's)."""
    return str(_get(_get(_shipping(schedules), "default"), "method", "standard") or "standard")


def named_date(schedules: Any, name: str, year: int) -> date | None:
    """A named date in ``year``: ``YYYY-MM-DD`` dates only in their own year, ``MM-DD`` every year."""
    if callable(getattr(schedules, "named_date", None)):
        try:
            found: date | None = schedules.named_date(name, year)
        except (KeyError, ValueError):
            return None
        return found
    dates = _get(schedules, "dates", {}) or {}
    value = dates.get(name) if isinstance(dates, dict) else None
    if value is None:
        return None
    if isinstance(value, date):
        return value if value.year == year else None
    month_day = getattr(value, "month", None), getattr(value, "day", None)
    if all(isinstance(part, int) for part in month_day) and not isinstance(value, str):
        return date(year, month_day[0], month_day[1])  # type: ignore[arg-type]
    text = str(value).strip()
    if len(text) == 5:
        return date.fromisoformat(f"{year}-{text}")
    day = date.fromisoformat(text)
    return day if day.year == year else None


class OccurrenceError(TidingsError):
    """An occurrence key that does not belong to the campaign's trigger."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One fire of a campaign's trigger.

    ``fire_at`` is when the daemon fires it (UTC). ``local`` is the wall-clock time of
    ``at``/``schedule`` fires (in each contact's zone when ``local_time``). Calendar fires
    carry the named date, the offset in days and, for global dates, the resulting ``day``.
    """

    key: str
    kind: str
    fire_at: datetime
    local: datetime | None = None
    local_time: bool = False
    date_name: str | None = None
    offset_days: int | None = None
    day: date | None = None
    at: time | None = None
    event_id: int | None = None

    @property
    def per_contact_date(self) -> bool:
        return self.date_name in PER_CONTACT_DATES


@dataclass(frozen=True, slots=True)
class FireTrigger:
    """An APScheduler trigger and how to name the occurrence of each of its fire times."""

    trigger: BaseTrigger
    occurrence: Callable[[datetime], Occurrence] = field(compare=False)


def _wall_key(moment: datetime) -> str:
    return moment.strftime(KEY_FORMAT)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, second=0, microsecond=0)


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """The campaign's crontab line as the APScheduler trigger the loader validated it with.

    One parser for validation and firing (``engine.workspace.cron``), so that what ``validate``
    accepts is exactly what fires: crontab weekday numbers (0 and 7 = Sunday), names, ranges and
    steps are translated deliberately, because APScheduler 3 reads 0 as Monday.
    """
    return workspace_cron_trigger(expression, zone)


def _zone(campaign: Any, default_zone: ZoneInfo | None) -> ZoneInfo:
    if getattr(campaign, "timezone", None):
        return campaign.zone  # type: ignore[no-any-return]
    return default_zone or ZoneInfo("UTC")


def _offset_key(name: str, offset_days: int, day: date | None) -> str:
    key = f"{name}{offset_days:+d}d"
    return f"{key}@{day.isoformat()}" if day is not None else key


def campaign_triggers(
    campaign: Any, schedules: Any, *, years: range, default_zone: ZoneInfo | None = None
) -> list[FireTrigger]:
    """The APScheduler triggers that fire ``campaign`` (none for event triggers).

    ``years`` bounds the calendar dates written as ``MM-DD`` (every year); the daemon asks
    for this year and the next and reloads at the turn of the year.
    """
    trigger = campaign.trigger
    spec = trigger.spec
    kind = trigger.kind
    zone = _zone(campaign, default_zone)
    local = bool(getattr(spec, "local_time", False))
    fire_zone = EARLIEST_ZONE if local else zone
    if kind == "event":
        return []
    if kind == "at":
        wall = _naive(spec.time)

        def at_occurrence(fire: datetime) -> Occurrence:
            return Occurrence(_wall_key(wall), "at", fire.astimezone(UTC), local=wall, local_time=local)

        return [FireTrigger(DateTrigger(run_date=wall, timezone=fire_zone), at_occurrence)]
    if kind == "schedule":

        def cron_occurrence(fire: datetime) -> Occurrence:
            wall = _naive(fire.astimezone(fire_zone))
            return Occurrence(_wall_key(wall), "schedule", fire.astimezone(UTC), local=wall, local_time=local)

        return [FireTrigger(cron_trigger(spec.cron, fire_zone), cron_occurrence)]
    # calendar
    name = str(spec.date)
    at = spec.at
    fires: list[FireTrigger] = []
    for offset in spec.offsets:
        days = int(offset.whole_days)
        if name in PER_CONTACT_DATES:
            rows = cutoff_rows(schedules)
            if not rows:
                continue
            first = min(_cutoff_send(row, days, at, fire_zone, local) for row in rows)
            occurrence = Occurrence(
                _offset_key(name, days, None),
                "calendar",
                first,
                local_time=local,
                date_name=name,
                offset_days=days,
                at=at,
            )
            fires.append(FireTrigger(DateTrigger(run_date=first), _fixed(occurrence)))
            continue
        for year in years:
            base = named_date(schedules, name, year)
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


def cutoff_day(row: CutoffRow, offset_days: int) -> date:
    """The cutoff's date in its own zone, moved by whole days."""
    return row.order_by.astimezone(row.zone).date() + timedelta(days=offset_days)


def _cutoff_send(row: CutoffRow, offset_days: int, at: time, zone: ZoneInfo, local: bool) -> datetime:
    return local_instant(cutoff_day(row, offset_days), at, zone)


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


def _in_window(campaign: Any, occurrence: Occurrence, zone: ZoneInfo) -> bool:
    window = getattr(campaign, "window", None)
    if window is None or occurrence.per_contact_date:
        return True  # per-contact dates are checked contact by contact group in the planner
    local = occurrence.local
    day = local.date() if local is not None else occurrence.fire_at.astimezone(zone).date()
    return bool(window.start <= day <= window.end)


def is_active(campaign: Any) -> bool:
    return str(getattr(campaign.status, "value", campaign.status)) == "active"


def due_occurrences(
    campaign: Any,
    schedules: Any,
    since: datetime,
    until: datetime,
    *,
    default_zone: ZoneInfo | None = None,
    include_inactive: bool = False,
) -> list[Occurrence]:
    """The campaign's occurrences firing in ``[since, until]``, in order, inside its window.

    Paused and draft campaigns have none unless ``include_inactive`` (``plan`` shows them).
    """
    if not include_inactive and not is_active(campaign):
        return []
    zone = _zone(campaign, default_zone)
    years = range(since.year - 1, until.year + 2)
    found: dict[str, Occurrence] = {}
    for fire in campaign_triggers(campaign, schedules, years=years, default_zone=default_zone):
        for occurrence in _walk(fire, since, until):
            if _in_window(campaign, occurrence, zone):
                found.setdefault(occurrence.key, occurrence)
    return sorted(found.values(), key=lambda o: (o.fire_at, o.key))


def manual_occurrence(campaign: Any, now: datetime, *, default_zone: ZoneInfo | None = None) -> Occurrence:
    """``manual-DATE``: today in the campaign zone, so triggering twice a day is idempotent."""
    today = now.astimezone(_zone(campaign, default_zone)).date()
    return Occurrence(f"manual-{today.isoformat()}", "manual", now.astimezone(UTC))


def current_occurrence(
    campaign: Any, now: datetime, schedules: Any = None, *, default_zone: ZoneInfo | None = None
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
    return manual_occurrence(campaign, now, default_zone=default_zone)


def event_occurrence(event_id: int, occurred_at: datetime, *, once: bool = False) -> Occurrence:
    """An event trigger's occurrence: the event id, or ``once`` when a contact is enrolled only once."""
    key = "once" if once else str(event_id)
    return Occurrence(key, "event", occurred_at.astimezone(UTC), event_id=event_id)


def occurrence_from_key(
    campaign: Any, key: str, schedules: Any = None, *, default_zone: ZoneInfo | None = None
) -> Occurrence:
    """Rebuild an occurrence from its key (the daemon's jobs carry plain strings)."""
    if key.startswith("manual-"):
        day = date.fromisoformat(key.removeprefix("manual-"))
        zone = _zone(campaign, default_zone)
        return Occurrence(key, "manual", local_instant(day, time(0), zone))
    kind = campaign.trigger.kind
    if kind in {"at", "schedule"}:
        try:
            wall = datetime.strptime(key, KEY_FORMAT)
        except ValueError:
            raise OccurrenceError(f"{key!r} is not an occurrence of campaign {campaign.key}") from None
        local = bool(campaign.trigger.local_time)
        fire_zone = EARLIEST_ZONE if local else _zone(campaign, default_zone)
        fire = wall.replace(tzinfo=fire_zone).astimezone(UTC)
        return Occurrence(key, kind, fire, local=wall, local_time=local)
    if kind == "calendar":
        match = _CALENDAR_KEY.match(key)
        if match:
            years = range(2000, 2100)
            if match.group("day"):
                day = date.fromisoformat(match.group("day"))
                years = range(day.year - 1, day.year + 2)
            for candidate in campaign_triggers(campaign, schedules, years=years, default_zone=default_zone):
                moment = candidate.trigger.get_next_fire_time(None, datetime.min.replace(tzinfo=UTC))
                occurrence = candidate.occurrence(moment)
                if occurrence.key == key:
                    return occurrence
        raise OccurrenceError(f"{key!r} is not an occurrence of campaign {campaign.key}")
    raise OccurrenceError(f"{key!r} is not an occurrence of campaign {campaign.key}")
