"""Cron fires follow the wall clock across daylight-saving changes, checked against an oracle.

The oracle walks every minute of local wall-clock time and keeps those the five crontab fields
match; each match is placed in the zone with zoneinfo's ``fold=0`` (a time in a spring gap is the
instant after it, a time the autumn change repeats fires once), and an instant reached by two wall
times (an hourly job's 02:15 in the gap and its 03:15) fires once. APScheduler 3.11's own CronTrigger
misses ``0 0 * * *`` in Europe/Tallinn on 2027-03-29 and ``0 0 1 * *`` in America/Sao_Paulo on
2018-12-01; the wall-clock trigger must not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.workspace.cron import cron_trigger

DST_DATES = {
    "Europe/Tallinn": [datetime(2027, 3, 28), datetime(2027, 10, 31)],
    "America/New_York": [datetime(2026, 3, 8), datetime(2026, 11, 1)],
    "America/Sao_Paulo": [datetime(2018, 11, 4), datetime(2019, 2, 17)],
    "Australia/Lord_Howe": [datetime(2026, 4, 5), datetime(2026, 10, 4)],  # a half-hour change
}


def _matches(value: int, field: str) -> bool:
    if field == "*":
        return True
    return any(int(part) == value for part in field.split(","))


def oracle(spec: str, zone: ZoneInfo, start: datetime, minutes: int) -> list[datetime]:
    """Every wall-clock minute from naive ``start`` matching ``spec`` (numeric fields, weekday ``*``)."""
    minute, hour, day, month, weekday = spec.split()
    assert weekday == "*"
    fires = []
    for step in range(minutes):
        wall = start + timedelta(minutes=step)
        if (
            _matches(wall.minute, minute)
            and _matches(wall.hour, hour)
            and _matches(wall.day, day)
            and _matches(wall.month, month)
        ):
            fires.append(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))
    return sorted(set(fires))


def walk(spec: str, zone: ZoneInfo, start: datetime, minutes: int) -> list[datetime]:
    trigger = cron_trigger(spec, zone)
    begin = start.replace(tzinfo=zone).astimezone(UTC)
    end = (start + timedelta(minutes=minutes)).replace(tzinfo=zone).astimezone(UTC)
    found: list[datetime] = []
    previous, now = None, begin
    while True:
        moment = trigger.get_next_fire_time(previous, now)
        if moment is None or moment >= end:
            return found
        found.append(moment.astimezone(UTC))
        previous = now = moment


def test_midnight_every_day_in_tallinn_fires_the_day_after_spring_forward() -> None:
    fires = walk("0 0 * * *", ZoneInfo("Europe/Tallinn"), datetime(2027, 3, 26), 6 * 24 * 60)
    days = [f.astimezone(ZoneInfo("Europe/Tallinn")).date().isoformat() for f in fires]
    assert days == ["2027-03-26", "2027-03-27", "2027-03-28", "2027-03-29", "2027-03-30", "2027-03-31"]


def test_the_first_of_every_month_is_never_lost_to_a_change_at_midnight() -> None:
    fires = walk("0 0 1 * *", ZoneInfo("America/Sao_Paulo"), datetime(2018, 10, 1), 150 * 24 * 60)
    months = [f.astimezone(ZoneInfo("America/Sao_Paulo")).strftime("%Y-%m") for f in fires]
    assert months == ["2018-10", "2018-11", "2018-12", "2019-01", "2019-02"]


@pytest.mark.parametrize("zone_name", sorted(DST_DATES))
@pytest.mark.parametrize("spec", ["0 0 * * *", "30 2 * * *", "30 1 * * *", "15 * * * *", "0 3 * * *"])
def test_fires_equal_the_wall_clock_oracle_around_every_change(zone_name: str, spec: str) -> None:
    zone = ZoneInfo(zone_name)
    for change in DST_DATES[zone_name]:
        start = change - timedelta(days=2)
        assert walk(spec, zone, start, 4 * 24 * 60) == oracle(spec, zone, start, 4 * 24 * 60)


@settings(max_examples=60, deadline=None)
@given(
    zone_name=st.sampled_from(sorted(DST_DATES)),
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    which=st.integers(0, 1),
)
def test_any_daily_time_fires_once_per_local_day_as_the_oracle_says(
    zone_name: str, minute: int, hour: int, which: int
) -> None:
    zone = ZoneInfo(zone_name)
    start = DST_DATES[zone_name][which] - timedelta(days=1)
    spec = f"{minute} {hour} * * *"
    fired = walk(spec, zone, start, 3 * 24 * 60)
    assert fired == oracle(spec, zone, start, 3 * 24 * 60)
    assert len({f.astimezone(zone).date() for f in fired}) == len(fired)
