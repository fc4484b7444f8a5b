"""Crontab weekdays reach APScheduler as the days crontab means (APScheduler counts 0 = Monday)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.workspace.cron import CronError, cron_trigger

TALLINN = ZoneInfo("Europe/Tallinn")
START = datetime(2026, 12, 1, 0, 0, tzinfo=TALLINN)  # a Tuesday


def fire_weekdays(spec: str, count: int = 7) -> list[str]:
    trigger = cron_trigger(spec, TALLINN)
    days, previous, now = [], None, START
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        days.append(fire.strftime("%a"))
        previous, now = fire, fire
    return days


def test_monday_by_name_fires_on_monday_at_ten_in_the_given_zone() -> None:
    fire = cron_trigger("0 10 * * MON", "Europe/Tallinn").get_next_fire_time(None, START)
    assert fire == datetime(2026, 12, 7, 10, 0, tzinfo=TALLINN)


@pytest.mark.parametrize(
    ("spec", "weekday"), [("0 10 * * 0", "Sun"), ("0 10 * * 7", "Sun"), ("0 10 * * 1", "Mon")]
)
def test_crontab_weekday_numbers_count_sunday_as_zero_and_seven(spec: str, weekday: str) -> None:
    assert set(fire_weekdays(spec, 3)) == {weekday}


def test_weekday_range_one_to_five_is_monday_to_friday() -> None:
    assert set(fire_weekdays("0 10 * * 1-5", 10)) == {"Mon", "Tue", "Wed", "Thu", "Fri"}


def test_weekday_step_follows_crontab_numbering() -> None:
    assert set(fire_weekdays("0 10 * * */2", 8)) == {"Sun", "Tue", "Thu", "Sat"}


def test_weekend_range_through_sunday_works() -> None:
    assert set(fire_weekdays("0 10 * * FRI-SUN", 6)) == {"Fri", "Sat", "Sun"}
    assert set(fire_weekdays("0 10 * * 5-0", 6)) == {"Fri", "Sat", "Sun"}


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("0 10 * *", "expected 5 cron fields"),
        ("0 24 * * *", "not valid"),
        ("0 10 * * FUN", "is not a day"),
        ("0 10 1 * MON", "restricts both the day of month and the weekday"),
        ("0 10 * * FRI-MON", "runs backwards"),
    ],
)
def test_bad_cron_lines_say_what_is_wrong(spec: str, text: str) -> None:
    with pytest.raises(CronError, match=text):
        cron_trigger(spec, "UTC")
