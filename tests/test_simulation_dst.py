"""Every kind of trigger, wait and goal fires at the right local time across the autumn DST changes.

One simulated fortnight (2026-10-24 … 11-03) over contacts in London and Tallinn (clocks go back
on Oct 25) and New York (Nov 1), through :func:`engine.simulation.simulate`: the daemon's own
triggers, planner, flows and dispatcher on a simulated clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from test_daemon_support import DELIVERY, add_event, add_people, load, make_workspace, settings_for

from engine.simulation import SimulationOptions, simulate
from engine.store import make_engine, upgrade

HEADER = """\
name: {name}
status: active
timezone: America/New_York
audience: {{segment: everyone}}
"""
SEND = """\
steps:
  - send: {channel: email, template: hello}
"""
CAMPAIGNS = {
    "nightly": HEADER.format(name="Nightly")
    + 'window: {start: 2026-10-31, end: 2026-11-02}\ntrigger:\n  schedule: {cron: "30 1 * * *"}\n'
    + SEND,
    "monday": HEADER.format(name="Monday")
    + "trigger:\n  at: {time: 2026-10-26T09:00, local_time: true}\n"
    + SEND,
    "order-by": HEADER.format(name="Order by")
    + 'trigger:\n  calendar: {date: shipping_cutoff, offsets: [-1d], at: "09:00", local_time: true}\n'
    + SEND,
    "welcome": HEADER.format(name="Welcome")
    + "trigger:\n  event: {type: custom.signup}\ngoal: {event: order.placed}\n"
    + 'steps:\n  - wait: {duration: 1d, until_time: "10:00"}\n  - send: {channel: email, template: hello}\n',
}
SIX = 6  # two contacts per zone: 1, 4 London · 2, 5 Tallinn · 3, 6 New York
ZONES = {1: "Europe/London", 2: "Europe/Tallinn", 3: "America/New_York"}


def zone_of(contact_id: int) -> ZoneInfo:
    return ZoneInfo(ZONES[(contact_id - 1) % 3 + 1])


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """Sent rows per campaign, with each send's local time in its contact's zone."""
    tmp = tmp_path_factory.mktemp("dst")
    root = make_workspace(tmp / "ws", CAMPAIGNS)
    engine = make_engine(f"sqlite:///{tmp / 'tidings.db'}")
    upgrade(engine)
    add_people(engine, SIX)
    # Everyone signs up on Saturday Oct 24 at 12:00 UTC; contact 4 (London) orders before the wait ends.
    for contact_id in range(1, SIX + 1):
        add_event(engine, contact_id, "custom.signup", datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    add_event(engine, 4, "order.placed", datetime(2026, 10, 25, 8, 0, tzinfo=UTC), order_id="A-4")
    settings = settings_for(root, tmp / "tidings.db")
    options = SimulationOptions(date(2026, 10, 24), date(2026, 11, 3), tmp / "sim", tmp / "sim-outbox")
    simulate(settings, engine, load(root), options)
    engine.dispose()
    copy = make_engine(f"sqlite:///{tmp / 'sim' / 'simulation.db'}")
    with copy.connect() as conn:
        rows = list(conn.execute(select(DELIVERY).where(DELIVERY.c.state == "sent")))
    copy.dispose()
    found: dict[str, list[Any]] = {}
    for row in rows:
        local = row.sent_at.astimezone(zone_of(row.contact_id))
        found.setdefault(row.campaign_id, []).append((row.contact_id, local))
    return found


def test_daily_0130_cron_sends_once_a_day_through_the_new_york_change(season: dict[str, list[Any]]) -> None:
    sends = season["nightly"]
    assert Counter(contact for contact, _ in sends) == Counter({c: 3 for c in range(1, SIX + 1)})
    new_york = ZoneInfo("America/New_York")
    days = sorted({local.astimezone(new_york).date() for _, local in sends})
    assert days == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    assert {(m.astimezone(new_york).hour, m.astimezone(new_york).minute) for _, m in sends} == {(1, 30)}


def test_one_off_local_time_send_reaches_everyone_at_nine_in_their_own_zone(
    season: dict[str, list[Any]],
) -> None:
    sends = season["monday"]
    assert sorted(contact for contact, _ in sends) == list(range(1, SIX + 1))
    assert {(local.date(), local.hour, local.minute) for _, local in sends} == {(date(2026, 10, 26), 9, 0)}
    # 09:00 London is 09:00 UTC after the change (GMT), 09:00 Tallinn is 07:00 UTC (EET).
    by_contact = dict(sends)
    assert by_contact[1].astimezone(UTC).hour == 9 and by_contact[2].astimezone(UTC).hour == 7


def test_per_contact_cutoff_reminder_comes_a_day_before_their_own_cutoff_at_nine_local(
    season: dict[str, list[Any]],
) -> None:
    sends = dict(season["order-by"])
    assert sorted(sends) == list(range(1, SIX + 1))
    for contact_id, local in sends.items():
        expected_day = (
            date(2026, 11, 1) if zone_of(contact_id).key == "America/New_York" else date(2026, 10, 25)
        )
        # Both days are the very days the clocks change in those zones.
        assert (local.date(), local.hour, local.minute) == (expected_day, 9, 0), contact_id


def test_event_flow_waits_a_day_then_sends_at_ten_local_and_stops_at_its_goal(
    season: dict[str, list[Any]],
) -> None:
    sends = dict(season["welcome"])
    assert sorted(sends) == [1, 2, 3, 5, 6]  # contact 4 ordered during the wait: goal reached
    for contact_id, local in sends.items():
        assert (local.hour, local.minute) == (10, 0), contact_id
        signed_up = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
        assert (local - signed_up).total_seconds() >= 86_400, contact_id
    assert sends[1].date() == date(2026, 10, 26)  # Sunday 12:00 GMT + the wait → Monday 10:00 London
