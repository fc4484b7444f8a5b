"""Stored shop events become flow enrolments exactly once, at their time, and stale ones never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from test_daemon_support import EVENT, add_event, add_people, load, make_workspace, settings_for

from engine.clock import FakeClock
from engine.runtime.event_pump import process_events, pump_due_events
from engine.settings import Settings
from engine.store.models import Enrolment
from engine.workspace.loader import Workspace

ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
WELCOME = """\
name: Welcome
status: active
audience: {segment: everyone}
trigger:
  event: {type: custom.signup}
steps:
  - send: {channel: email, template: hello}
"""
SIGNED_UP = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return load(make_workspace(tmp_path / "ws", {"welcome": WELCOME}))


@pytest.fixture
def settings(tmp_path: Path, sqlite_engine: Engine) -> Settings:
    add_people(sqlite_engine, 3)
    return settings_for(tmp_path / "ws", tmp_path / "tidings.db")


def enrolments(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(ENROLMENT.c.contact_id, ENROLMENT.c.occurrence))]  # type: ignore[misc]


def unprocessed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(EVENT.c.processed_at.is_(None))).scalar_one())


def test_an_event_enrols_its_contact_once_however_often_the_pump_runs(
    sqlite_engine: Engine, workspace: Workspace, settings: Settings
) -> None:
    event_id = add_event(sqlite_engine, 2, "custom.signup", SIGNED_UP)
    clock = FakeClock(SIGNED_UP + timedelta(minutes=1))

    first = pump_due_events(sqlite_engine, workspace, clock, settings)
    clock.advance(60)
    second = pump_due_events(sqlite_engine, workspace, clock, settings)

    assert (first.events, first.enrolled) == (1, 1)
    assert (second.events, second.enrolled) == (0, 0)
    assert enrolments(sqlite_engine) == [(2, str(event_id))]
    assert unprocessed(sqlite_engine) == 0


def test_an_event_is_not_processed_before_it_happens(
    sqlite_engine: Engine, workspace: Workspace, settings: Settings
) -> None:
    add_event(sqlite_engine, 1, "custom.signup", SIGNED_UP)
    clock = FakeClock(SIGNED_UP - timedelta(hours=1))

    assert not pump_due_events(sqlite_engine, workspace, clock, settings)
    assert enrolments(sqlite_engine) == [] and unprocessed(sqlite_engine) == 1

    clock.set(SIGNED_UP)
    assert pump_due_events(sqlite_engine, workspace, clock, settings).enrolled == 1


def test_events_older_than_two_days_when_first_seen_enrol_nobody(
    sqlite_engine: Engine, workspace: Workspace, settings: Settings
) -> None:
    add_event(sqlite_engine, 1, "custom.signup", SIGNED_UP)
    add_event(sqlite_engine, 3, "custom.signup", SIGNED_UP + timedelta(days=2, hours=12))
    clock = FakeClock(SIGNED_UP + timedelta(days=3))

    stats = pump_due_events(sqlite_engine, workspace, clock, settings)

    assert (stats.stale, stats.events, stats.enrolled) == (1, 1, 1)
    assert [contact for contact, _ in enrolments(sqlite_engine)] == [3]
    assert unprocessed(sqlite_engine) == 0  # the stale one is marked, so it is never picked up again


def test_events_pushed_through_the_public_app_are_not_enrolled_again_by_the_tick(
    sqlite_engine: Engine, workspace: Workspace, settings: Settings
) -> None:
    event_id = add_event(sqlite_engine, 1, "custom.signup", SIGNED_UP)
    clock = FakeClock(SIGNED_UP)

    pushed = process_events(sqlite_engine, workspace, [event_id], clock, settings)
    ticked = pump_due_events(sqlite_engine, workspace, clock, settings)

    assert pushed.enrolled == 1 and not ticked
    assert len(enrolments(sqlite_engine)) == 1


def test_a_second_event_of_the_same_kind_enrols_the_contact_again_by_default(
    sqlite_engine: Engine, workspace: Workspace, settings: Settings
) -> None:
    first = add_event(sqlite_engine, 1, "custom.signup", SIGNED_UP)
    second = add_event(sqlite_engine, 1, "custom.signup", SIGNED_UP + timedelta(hours=1))
    clock = FakeClock(SIGNED_UP + timedelta(hours=2))

    pump_due_events(sqlite_engine, workspace, clock, settings)

    assert sorted(enrolments(sqlite_engine)) == [(1, str(first)), (1, str(second))]
