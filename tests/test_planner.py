"""The planner: idempotent outbox rows, per-contact local times, shipping cutoffs, holidays, windows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine
from test_planner_support import add_contacts, add_orders, campaign, schedules, settings, workspace

from engine.clock import FakeClock
from engine.runtime.occurrences import current_occurrence, due_occurrences, occurrence_from_key
from engine.runtime.planner import plan_occurrence
from engine.store.models import Delivery, Enrolment, Post
from engine.workspace.loader import Workspace

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scheduled(engine: Engine) -> dict[int, datetime]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(DELIVERY.c.contact_id, DELIVERY.c.scheduled_for).order_by(DELIVERY.c.contact_id)
        )
        return {contact_id: when for contact_id, when in rows}


UTC_ZONE = ZoneInfo("UTC")


def plan(
    engine: Engine,
    tmp_path: Path,
    the_campaign: Any,
    now: datetime,
    *,
    ws: Workspace | None = None,
    due_now: bool = False,
    key: str | None = None,
) -> Any:
    ws = ws or workspace()
    occurrence = (
        occurrence_from_key(the_campaign, key, ws.schedules, default_zone=UTC_ZONE)
        if key
        else current_occurrence(the_campaign, now, ws.schedules, default_zone=UTC_ZONE)
    )
    return plan_occurrence(
        engine,
        ws,
        the_campaign,
        occurrence,
        clock=FakeClock(now),
        settings=settings(tmp_path),
        due_now=due_now,
    )


THREE_ZONES = [
    {"id": 1, "email": "kadri@example.ee", "timezone": "Europe/Tallinn", "country": "EE", "locale": "et"},
    {"id": 2, "email": "ioana@example.ro", "timezone": "Europe/Bucharest", "country": "RO", "locale": "ro"},
    {"id": 3, "email": "jo@example.com", "timezone": "America/New_York", "country": "US", "locale": "en"},
    {"id": 4, "email": "nozone@example.com", "timezone": None, "country": None, "locale": None},
]


def test_planning_the_same_occurrence_twice_creates_no_second_row(
    store_engine: Engine, tmp_path: Path
) -> None:
    add_contacts(store_engine, THREE_ZONES)
    greetings = campaign("greetings", trigger={"at": "2026-12-14T10:00"})
    first = plan(store_engine, tmp_path, greetings, utc("2026-12-14T08:00"))
    second = plan(store_engine, tmp_path, greetings, utc("2026-12-14T08:05"))
    assert (first.created, second.created) == (4, 0)
    with store_engine.connect() as conn:
        keys = (
            conn.execute(select(DELIVERY.c.idempotency_key).order_by(DELIVERY.c.contact_id)).scalars().all()
        )
    assert keys[0] == "greetings:hello:1:2026-12-14T10:00"
    assert len(keys) == 4


def test_local_nine_oclock_is_nine_in_each_contacts_zone(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, THREE_ZONES)
    greetings = campaign("greetings", trigger={"at": {"time": "2026-12-14T09:00", "local_time": True}})
    stats = plan(store_engine, tmp_path, greetings, utc("2026-12-13T12:00"))
    assert stats.created == 4
    assert scheduled(store_engine) == {
        1: utc("2026-12-14T07:00"),  # Tallinn, UTC+2 in winter
        2: utc("2026-12-14T07:00"),  # Bucharest, UTC+2
        3: utc("2026-12-14T14:00"),  # New York, UTC-5
        4: utc("2026-12-14T09:00"),  # no zone: TIDINGS_TIMEZONE (UTC)
    }


def test_local_time_on_the_spring_dst_change_sends_after_the_gap(
    store_engine: Engine, tmp_path: Path
) -> None:
    add_contacts(store_engine, THREE_ZONES[:3])
    # 2026-03-29 03:30 does not exist in Tallinn and Bucharest (03:00 → 04:00); New York is on EDT already.
    spring = campaign("spring", trigger={"at": {"time": "2026-03-29T03:30", "local_time": True}})
    plan(store_engine, tmp_path, spring, utc("2026-03-28T00:00"))
    assert scheduled(store_engine) == {
        1: utc("2026-03-29T01:30"),  # 04:30 EEST, the moment an unchanged clock would show 03:30
        2: utc("2026-03-29T01:30"),
        3: utc("2026-03-29T07:30"),  # 03:30 EDT
    }


def test_trigger_now_schedules_every_zone_at_once(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, THREE_ZONES)
    greetings = campaign("greetings", trigger={"at": {"time": "2026-12-14T09:00", "local_time": True}})
    now = utc("2026-12-10T15:00")
    plan(store_engine, tmp_path, greetings, now, due_now=True)
    assert set(scheduled(store_engine).values()) == {now}


CUTOFFS = {
    "shipping_cutoffs": {
        "deliver_before": "2026-12-24",
        "cutoffs": [
            {
                "country": "EE",
                "method": "standard",
                "carrier": "Omniva",
                "order_by": "2026-12-19 12:00",
                "timezone": "Europe/Tallinn",
            },
            {
                "country": "EE",
                "method": "express",
                "carrier": "DPD",
                "order_by": "2026-12-22 12:00",
                "timezone": "Europe/Tallinn",
            },
            {
                "country": "RO",
                "method": "standard",
                "carrier": "FAN Courier",
                "order_by": "2026-12-18 16:00",
                "timezone": "Europe/Bucharest",
            },
        ],
        "default": {"method": "standard"},
    }
}


def add_shipping_contacts(store_engine: Engine) -> None:
    add_contacts(
        store_engine,
        [
            {"id": 1, "email": "express@example.ee", "timezone": "Europe/Tallinn", "country": "EE"},
            {"id": 2, "email": "noorders@example.ee", "timezone": "Europe/Tallinn", "country": "EE"},
            {"id": 3, "email": "express@example.ro", "timezone": "Europe/Bucharest", "country": "RO"},
            {"id": 4, "email": "far@example.com", "timezone": "America/New_York", "country": "US"},
        ],
    )
    add_orders(
        store_engine,
        [
            {
                "external_id": "a",
                "contact_id": 1,
                "placed_at": utc("2026-11-01T10:00"),
                "shipping_method": "standard",
            },
            {
                "external_id": "b",
                "contact_id": 1,
                "placed_at": utc("2026-11-20T10:00"),
                "shipping_method": "express",
            },
            {
                "external_id": "c",
                "contact_id": 3,
                "placed_at": utc("2026-11-20T10:00"),
                "shipping_method": "express",
            },
        ],
    )


def test_shipping_cutoff_offsets_follow_each_contacts_country_and_method(
    store_engine: Engine, tmp_path: Path
) -> None:
    add_shipping_contacts(store_engine)
    ws = workspace(schedules=schedules(CUTOFFS))
    reminders = campaign(
        "shipping-deadlines",
        trigger={
            "calendar": {"date": "shipping_cutoff", "offsets": ["-2d"], "at": "09:00", "local_time": True}
        },
    )
    stats = plan(
        store_engine, tmp_path, reminders, utc("2026-12-01T00:00"), ws=ws, key="shipping_cutoff-2d@2026-12-24"
    )
    assert stats.created == 3
    assert stats.excluded == {"no_cutoff": 1}
    assert scheduled(store_engine) == {
        1: utc("2026-12-20T07:00"),  # last order express: EE express 12-22, -2d, 09:00 Tallinn
        2: utc("2026-12-17T07:00"),  # no orders: the default method, EE standard 12-19
        3: utc("2026-12-16T07:00"),  # RO has no express row: the default method's row, 12-18
    }


def test_a_send_on_a_public_holiday_moves_to_the_next_working_day(
    store_engine: Engine, tmp_path: Path
) -> None:
    add_contacts(store_engine, THREE_ZONES[:3])
    eve = campaign(
        "christmas-eve",
        trigger={"at": {"time": "2026-12-24T10:00", "local_time": True}},
        limits={"skip_public_holidays": True},
    )
    plan(store_engine, tmp_path, eve, utc("2026-12-20T00:00"))
    assert scheduled(store_engine) == {
        1: utc("2026-12-27T08:00"),  # Estonia: 24, 25 and 26 December are holidays; the 27th at 10:00 local
        2: utc("2026-12-24T08:00"),  # Romania: the 24th is a working day
        3: utc("2026-12-24T15:00"),  # United States: the 24th is a working day
    }


def test_an_occurrence_outside_the_window_sends_nothing(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, THREE_ZONES)
    late = campaign(
        "late", trigger={"at": "2027-01-10T10:00"}, window={"start": "2026-12-01", "end": "2027-01-09"}
    )
    stats = plan(store_engine, tmp_path, late, utc("2027-01-10T10:00"))
    assert stats.created == 0
    assert stats.excluded == {"outside_window": 4}
    empty = workspace().schedules
    assert (
        due_occurrences(late, empty, utc("2027-01-01T00:00"), utc("2027-01-31T00:00"), default_zone=UTC_ZONE)
        == []
    )


def test_a_draft_campaign_plans_nothing(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, THREE_ZONES)
    draft = campaign("draft", status="draft", trigger={"at": "2026-12-14T10:00"})
    stats = plan(store_engine, tmp_path, draft, utc("2026-12-14T10:00"))
    assert (stats.created, stats.skipped) == (0, "draft")


def test_only_contacts_with_consent_are_planned(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, THREE_ZONES[:2])
    add_contacts(store_engine, THREE_ZONES[2:], consent=False)
    greetings = campaign("greetings", trigger={"at": "2026-12-14T10:00"})
    plan(store_engine, tmp_path, greetings, utc("2026-12-14T10:00"))
    assert sorted(scheduled(store_engine)) == [1, 2]


def test_a_flow_enrols_contacts_at_their_send_time(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, THREE_ZONES[:2])
    flow = campaign(
        "january",
        trigger={"at": "2027-01-04T10:00"},
        steps=[{"send": {"template": "exchange-help"}}, {"wait": "3d"}, {"send": {"template": "win-back"}}],
    )
    first = plan(store_engine, tmp_path, flow, utc("2027-01-04T08:00"))
    again = plan(store_engine, tmp_path, flow, utc("2027-01-04T08:00"))
    assert (first.mode, first.created, again.created) == ("enrolments", 2, 0)
    table = Enrolment.__table__  # type: ignore[attr-defined]
    with store_engine.connect() as conn:
        rows = conn.execute(
            select(table.c.contact_id, table.c.step_path, table.c.wake_at, table.c.state)
        ).all()
    assert sorted(rows) == [
        (1, "0", utc("2027-01-04T10:00"), "active"),
        (2, "0", utc("2027-01-04T10:00"), "active"),
    ]


def test_a_broadcast_writes_one_post_per_step_and_occurrence(store_engine: Engine, tmp_path: Path) -> None:
    countdown = campaign(
        "countdown",
        audience=None,
        trigger={"schedule": {"cron": "0 12 * * *"}},
        steps=[{"id": "tweet", "post": {"channel": "x", "template": "shipping-countdown"}}],
    )
    now = utc("2026-12-15T12:30")
    first = plan(store_engine, tmp_path, countdown, now)
    again = plan(store_engine, tmp_path, countdown, now)
    assert (first.created, again.created) == (1, 0)
    table = Post.__table__  # type: ignore[attr-defined]
    with store_engine.connect() as conn:
        keys = conn.execute(select(table.c.idempotency_key)).scalars().all()
    assert keys == ["countdown:tweet:2026-12-15T12:00"]


def test_triggering_a_shipping_reminder_now_still_leaves_out_contacts_without_a_cutoff(
    store_engine: Engine, tmp_path: Path
) -> None:
    add_shipping_contacts(store_engine)
    ws = workspace(schedules=schedules(CUTOFFS))
    reminders = campaign(
        "shipping-deadlines",
        trigger={
            "calendar": {"date": "shipping_cutoff", "offsets": ["-2d"], "at": "09:00", "local_time": True}
        },
    )
    now = utc("2026-12-05T10:00")
    stats = plan(
        store_engine, tmp_path, reminders, now, ws=ws, key="shipping_cutoff-2d@2026-12-24", due_now=True
    )
    assert (stats.created, stats.excluded) == (3, {"no_cutoff": 1})
    assert set(scheduled(store_engine).values()) == {now}
