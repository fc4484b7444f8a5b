"""Holdouts: a stable share of the audience kept unsent, counted, and the lift measured against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from test_planner_support import add_contacts, add_orders, campaign, settings, workspace

from engine.clock import FakeClock
from engine.feedback.stats import campaign_stats
from engine.runtime import variants as ab
from engine.runtime.enrolment import enrol_for_events
from engine.runtime.holdouts import campaign_lifts, lift_source
from engine.runtime.occurrences import current_occurrence
from engine.runtime.planner import plan_contact, plan_occurrence
from engine.store.models import Delivery, Enrolment, ShopEvent
from engine.workspace.models import Campaign

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
SEND_AT = datetime(2027, 1, 20, 10, 0, tzinfo=UTC)
CONTACTS = 2_000


def win_back(**spec: Any) -> Campaign:
    return campaign("win-back", trigger={"at": "2027-01-20T10:00"}, holdout="10%", **spec)


def plan(engine: Engine, tmp_path: Path, chosen: Campaign) -> None:
    ws = workspace(chosen)
    occurrence = current_occurrence(chosen, SEND_AT, ws.schedules, default_zone=ZoneInfo("UTC"))
    plan_occurrence(engine, ws, chosen, occurrence, clock=FakeClock(SEND_AT), settings=settings(tmp_path))


def people(engine: Engine, count: int = CONTACTS) -> None:
    add_contacts(engine, [{"id": i, "email": f"c{i}@example.com"} for i in range(1, count + 1)])


def held(contact_id: int, campaign_id: str = "win-back", share: float = 0.1) -> bool:
    return ab.in_share(contact_id, ab.holdout_key(campaign_id), share)


def test_a_holdout_is_planned_as_skipped_rows_so_planned_still_adds_up(
    store_engine: Engine, tmp_path: Path
) -> None:
    people(store_engine)
    plan(store_engine, tmp_path, win_back())
    with store_engine.connect() as conn:
        found = conn.execute(select(DELIVERY.c.contact_id, DELIVERY.c.state, DELIVERY.c.reason)).all()
    assert len(found) == CONTACTS
    skipped = {cid for cid, state, reason in found if (state, reason) == ("skipped", "holdout")}
    assert skipped == {cid for cid in range(1, CONTACTS + 1) if held(cid)}
    assert abs(len(skipped) - CONTACTS * 0.1) < 60
    stats = campaign_stats(store_engine, window_days=7).rows[0]
    assert (stats.planned, stats.skipped, stats.pending) == (CONTACTS, len(skipped), CONTACTS - len(skipped))
    assert stats.skipped_by_reason == {"holdout": len(skipped)}


def test_the_same_contacts_are_held_out_at_every_occurrence_and_nobody_else(
    store_engine: Engine, tmp_path: Path
) -> None:
    people(store_engine, 300)
    weekly = campaign("weekly", trigger={"schedule": {"cron": "0 10 * * MON"}}, holdout="10%")
    ws = workspace(weekly)
    for day in (18, 25):
        moment = datetime(2027, 1, day, 10, 0, tzinfo=UTC)
        occurrence = current_occurrence(weekly, moment, ws.schedules, default_zone=ZoneInfo("UTC"))
        plan_occurrence(
            store_engine, ws, weekly, occurrence, clock=FakeClock(moment), settings=settings(tmp_path)
        )
    with store_engine.connect() as conn:
        found = conn.execute(
            select(DELIVERY.c.occurrence, DELIVERY.c.contact_id).where(DELIVERY.c.reason == "holdout")
        ).all()
    by_occurrence: dict[str, set[int]] = {}
    for occurrence_key, contact_id in found:
        by_occurrence.setdefault(occurrence_key, set()).add(contact_id)
    first, second = by_occurrence.values()
    assert first == second == {cid for cid in range(1, 301) if held(cid, "weekly")}


def test_plan_contact_names_the_holdout(store_engine: Engine, tmp_path: Path) -> None:
    people(store_engine, 200)
    chosen = win_back()
    ws = workspace(chosen)
    occurrence = current_occurrence(chosen, SEND_AT, ws.schedules, default_zone=ZoneInfo("UTC"))
    inside = next(cid for cid in range(1, 201) if held(cid))
    outside = next(cid for cid in range(1, 201) if not held(cid))
    with store_engine.connect() as conn:
        one = plan_contact(conn, ws, chosen, occurrence, inside, settings=settings(tmp_path), now=SEND_AT)
        other = plan_contact(conn, ws, chosen, occurrence, outside, settings=settings(tmp_path), now=SEND_AT)
    assert (one.excluded, other.excluded) == ("holdout", None)


def test_a_flow_ends_held_out_enrolments_at_once_as_exited_holdout(
    store_engine: Engine, tmp_path: Path
) -> None:
    people(store_engine, 400)
    flow = win_back(steps=[{"wait": "1d"}, {"id": "hello", "send": {"template": "hello"}}])
    plan(store_engine, tmp_path, flow)
    with store_engine.connect() as conn:
        found = conn.execute(
            select(ENROLMENT.c.contact_id, ENROLMENT.c.state, ENROLMENT.c.end_reason, ENROLMENT.c.wake_at)
        ).all()
    assert len(found) == 400
    ended = {
        cid for cid, state, reason, wake in found if (state, reason, wake) == ("exited", "holdout", None)
    }
    assert ended == {cid for cid in range(1, 401) if held(cid)}
    assert all(state == "active" for cid, state, _, _ in found if cid not in ended)


def test_an_event_enrolment_of_a_held_out_contact_is_recorded_and_ended(
    store_engine: Engine, tmp_path: Path
) -> None:
    people(store_engine, 60)
    welcome = campaign(
        "welcome",
        trigger={"event": {"type": "gift_card.redeemed"}},
        holdout="20%",
        steps=[{"id": "hello", "send": {"template": "hello"}}],
    )
    with store_engine.begin() as conn:
        conn.execute(
            insert(EVENT),
            [
                {
                    "external_id": f"e{i}",
                    "type": "gift_card.redeemed",
                    "contact_id": i,
                    "occurred_at": SEND_AT,
                    "payload": {},
                }
                for i in range(1, 61)
            ],
        )
        ids = list(conn.execute(select(EVENT.c.id)).scalars())
    enrol_for_events(store_engine, workspace(welcome), ids, FakeClock(SEND_AT), settings(tmp_path))
    with store_engine.connect() as conn:
        found = {
            cid: (state, reason)
            for cid, state, reason in conn.execute(
                select(ENROLMENT.c.contact_id, ENROLMENT.c.state, ENROLMENT.c.end_reason)
            )
        }
    assert len(found) == 60
    for cid, outcome in found.items():
        assert outcome == (("exited", "holdout") if held(cid, "welcome", 0.2) else ("active", None))


def test_lift_compares_orders_after_each_rows_scheduled_time(store_engine: Engine, tmp_path: Path) -> None:
    people(store_engine)
    plan(store_engine, tmp_path, win_back())
    with store_engine.begin() as conn:
        conn.execute(
            update(DELIVERY).where(DELIVERY.c.state == "pending").values(state="sent", sent_at=SEND_AT)
        )
    treated = [cid for cid in range(1, CONTACTS + 1) if not held(cid)]
    holdout = [cid for cid in range(1, CONTACTS + 1) if held(cid)]
    buyers = treated[: len(treated) // 5] + holdout[: len(holdout) // 10]  # 20 % against 10 %
    orders = [
        {
            "external_id": f"o{cid}",
            "contact_id": cid,
            "placed_at": SEND_AT + timedelta(days=2),
            "total": 50,
            "currency": "EUR",
        }
        for cid in buyers
    ]
    late = (
        [  # outside the 7-day window, or before the send: not a conversion
            {
                "external_id": f"late{cid}",
                "contact_id": cid,
                "placed_at": SEND_AT + timedelta(days=9),
                "total": 50,
                "currency": "EUR",
            }
            for cid in holdout[len(holdout) // 10 :]
        ]
        + [
            {
                "external_id": f"early{cid}",
                "contact_id": cid,
                "placed_at": SEND_AT - timedelta(hours=1),
                "total": 50,
                "currency": "EUR",
            }
            for cid in holdout
        ]
    )
    add_orders(store_engine, orders + late)
    with store_engine.connect() as conn:
        lifts = campaign_lifts(conn, "win-back", 7)
    rate, revenue = lifts
    assert (rate.metric, rate.holdout_contacts, rate.treated_contacts) == (
        "conversion_rate",
        len(holdout),
        len(treated),
    )
    assert abs(rate.treated - 0.2) < 0.002 and abs(rate.holdout - 0.1) < 0.01
    assert abs(rate.lift - (rate.treated / rate.holdout - 1)) < 1e-9
    assert rate.low < rate.lift < rate.high and rate.low > 0
    assert (revenue.metric, revenue.currency) == ("revenue_per_recipient", "EUR")
    assert abs(revenue.treated - 10.0) < 0.2 and abs(revenue.lift - rate.lift) < 1e-6
    report = campaign_stats(store_engine, window_days=7, lifts=lift_source(store_engine, 7))
    assert report.rows[0].lift == rate and report.rows[0].lifts == lifts


def test_no_lift_is_shown_before_the_holdout_has_a_conversion(store_engine: Engine, tmp_path: Path) -> None:
    people(store_engine, 500)
    plan(store_engine, tmp_path, win_back())
    with store_engine.begin() as conn:
        conn.execute(
            update(DELIVERY).where(DELIVERY.c.state == "pending").values(state="sent", sent_at=SEND_AT)
        )
    buyer = next(cid for cid in range(1, 501) if not held(cid))
    add_orders(
        store_engine,
        [
            {
                "external_id": "o1",
                "contact_id": buyer,
                "placed_at": SEND_AT + timedelta(days=1),
                "currency": "EUR",
            }
        ],
    )
    with store_engine.connect() as conn:
        assert campaign_lifts(conn, "win-back", 7) == []
    assert lift_source(store_engine, 7)("another-campaign") == []
