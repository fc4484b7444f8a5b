"""Occurrence keys and fire times for each trigger kind (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from test_planner_support import campaign, schedules

from engine.runtime.occurrences import (
    cron_trigger,
    current_occurrence,
    due_occurrences,
    occurrence_from_key,
)

UTC_ZONE = ZoneInfo("UTC")
NONE = schedules({})


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_crontab_weekday_numbers_and_steps_fire_on_the_days_cron_means() -> None:
    def days(cron: str) -> list[str]:
        trigger = cron_trigger(cron, ZoneInfo("UTC"))
        fires, previous, now = [], None, utc("2026-12-06T00:00")  # a Sunday
        for _ in range(7):
            previous = now = trigger.get_next_fire_time(previous, now)
            fires.append(now.strftime("%a"))
        return fires

    assert set(days("0 10 * * 1")) == {"Mon"}
    assert set(days("0 10 * * 0")) == {"Sun"}
    assert set(days("0 10 * * 7")) == {"Sun"}
    assert set(days("0 10 * * 1-5")) == {"Mon", "Tue", "Wed", "Thu", "Fri"}
    assert set(days("0 10 * * MON,WED")) == {"Mon", "Wed"}
    assert set(days("0 10 * * */2")) == {"Sun", "Tue", "Thu", "Sat"}  # crontab: every other day from Sunday


def test_weekly_schedule_fires_on_mondays_in_the_campaign_zone() -> None:
    weekly = campaign("weekly", timezone="Europe/Bucharest", trigger={"schedule": {"cron": "0 10 * * MON"}})
    found = due_occurrences(
        weekly, NONE, utc("2026-12-01T00:00"), utc("2026-12-20T00:00"), default_zone=UTC_ZONE
    )
    assert [o.key for o in found] == ["2026-12-07T10:00", "2026-12-14T10:00"]
    assert found[0].fire_at == utc("2026-12-07T08:00")


def test_a_local_time_schedule_has_one_key_for_every_zone_and_fires_for_the_earliest() -> None:
    daily = campaign("daily", trigger={"schedule": {"cron": "0 9 * * *", "local_time": True}})
    found = due_occurrences(
        daily, NONE, utc("2026-12-13T12:00"), utc("2026-12-14T12:00"), default_zone=UTC_ZONE
    )
    assert [o.key for o in found] == ["2026-12-14T09:00"]
    assert found[0].fire_at == utc("2026-12-13T19:00")  # 09:00 at UTC+14, the first zone to reach it


def test_calendar_occurrences_name_the_date_the_offset_and_the_day() -> None:
    ws = schedules({"dates": {"christmas": "12-25"}})
    countdown = campaign(
        "christmas", trigger={"calendar": {"date": "christmas", "offsets": ["-7d", "0d"], "at": "10:00"}}
    )
    found = due_occurrences(
        countdown, ws, utc("2026-12-01T00:00"), utc("2026-12-31T00:00"), default_zone=UTC_ZONE
    )
    assert [o.key for o in found] == ["christmas-7d@2026-12-18", "christmas+0d@2026-12-25"]
    assert occurrence_from_key(
        countdown, "christmas-7d@2026-12-18", ws, default_zone=UTC_ZONE
    ).fire_at == utc("2026-12-18T10:00")


def test_paused_campaigns_have_no_due_occurrences() -> None:
    paused = campaign("paused", status="paused", trigger={"schedule": {"cron": "0 10 * * *"}})
    assert (
        due_occurrences(paused, NONE, utc("2026-12-01T00:00"), utc("2026-12-05T00:00"), default_zone=UTC_ZONE)
        == []
    )


def test_trigger_fires_the_latest_scheduled_time_or_a_manual_occurrence() -> None:
    weekly = campaign("weekly", trigger={"schedule": {"cron": "0 10 * * MON"}})
    assert (
        current_occurrence(weekly, utc("2026-12-16T09:00"), NONE, default_zone=UTC_ZONE).key
        == "2026-12-14T10:00"
    )
    at = campaign("once", trigger={"at": "2027-01-04T10:00"})
    assert (
        current_occurrence(at, utc("2026-12-16T09:00"), NONE, default_zone=UTC_ZONE).key == "2027-01-04T10:00"
    )
    yearly = campaign("yearly", trigger={"schedule": {"cron": "0 10 1 1 *"}}, timezone="America/New_York")
    assert (
        current_occurrence(yearly, utc("2026-12-16T03:00"), NONE, default_zone=UTC_ZONE).key
        == "2026-01-01T10:00"
    )
    event = campaign("welcome", trigger={"event": {"type": "site.first_visit"}}, timezone="America/New_York")
    assert (
        current_occurrence(event, utc("2026-12-16T03:00"), NONE, default_zone=UTC_ZONE).key
        == "manual-2026-12-15"
    )
