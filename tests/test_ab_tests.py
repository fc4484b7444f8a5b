"""A/B tests that pick their winner: the slice goes first, the decision sends the winner to the rest."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from test_planner_support import add_contacts, add_orders, campaign, settings, workspace

from engine.clock import FakeClock
from engine.runtime import variants as ab
from engine.runtime.ab_tests import decide_due_tests, load_tests, verdict_source
from engine.runtime.claims import AWAITING_TEST, claim_due
from engine.runtime.flows import advance_due
from engine.runtime.measures import StatsKey
from engine.runtime.occurrences import current_occurrence
from engine.runtime.planner import plan_occurrence
from engine.store.models import AbTest, Delivery, DeliveryEvent
from engine.workspace.models import Campaign

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
EVENT = DeliveryEvent.__table__  # type: ignore[attr-defined]
AB_TEST = AbTest.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
SEND_AT = datetime(2026, 12, 14, 10, 0, tzinfo=UTC)
VARIANTS = [{"template": "greeting-a", "weight": 50}, {"template": "greeting-b", "weight": 50}]
CONTACTS = 1_000


def greetings(by: str = "clicks", share: str = "20%", **spec: Any) -> Campaign:
    return campaign(
        "greetings",
        trigger={"at": "2026-12-14T10:00"},
        steps=[
            {
                "id": "greeting",
                "send": {"variants": VARIANTS, "test": {"share": share, "decide_after": "4h", "by": by}},
            }
        ],
        **spec,
    )


def plan(engine: Engine, tmp_path: Path, chosen: Campaign, now: datetime = NOW) -> None:
    ws = workspace(chosen)
    occurrence = current_occurrence(chosen, SEND_AT, ws.schedules, default_zone=ZoneInfo("UTC"))
    plan_occurrence(engine, ws, chosen, occurrence, clock=FakeClock(now), settings=settings(tmp_path))


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(DELIVERY).order_by(DELIVERY.c.contact_id)))


def send(engine: Engine, row_ids: list[int], at: datetime) -> None:
    """What the dispatcher records for a message that went out."""
    with engine.begin() as conn:
        conn.execute(
            update(DELIVERY).where(DELIVERY.c.id.in_(row_ids)).values(state="sent", sent_at=at, updated_at=at)
        )


def events(engine: Engine, found: list[Any], kind: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(EVENT),
            [
                {
                    "provider_event_id": f"{kind}-{row.id}",
                    "delivery_id": row.id,
                    "contact_id": row.contact_id,
                    "type": kind,
                    "occurred_at": at,
                    "payload": {},
                }
                for row in found
            ],
        )


@pytest.fixture
def planned(store_engine: Engine, tmp_path: Path) -> Engine:
    add_contacts(store_engine, [{"id": i, "email": f"c{i}@example.com"} for i in range(1, CONTACTS + 1)])
    plan(store_engine, tmp_path, greetings())
    return store_engine


def test_the_share_hash_is_the_same_in_sql_and_python_on_both_backends(planned: Engine) -> None:
    key = ab.test_key("greetings", "greeting")
    with planned.connect() as conn:
        found = dict(
            conn.execute(
                select(DELIVERY.c.contact_id, ab.share_bucket_sql(DELIVERY.c.contact_id, key)).where(
                    DELIVERY.c.contact_id.is_not(None)
                )
            ).all()
        )
    assert found == {cid: ab.share_bucket(cid, key) for cid in found}


def test_a_test_slice_holds_each_variant_by_its_weight() -> None:
    """The slice is cut by a hash independent of the variant's: not one variant's contacts only."""
    choices = [ab.Variant("a", "a", 50), ab.Variant("b", "b", 50)]
    key = ab.test_key("greetings", "greeting")
    inside = Counter(
        ab.assign(cid, "greetings", choices).label for cid in range(1, 50_001) if ab.in_share(cid, key, 0.2)
    )
    assert abs(sum(inside.values()) - 10_000) < 300
    assert abs(inside["a"] / sum(inside.values()) - 0.5) < 0.015


def test_the_slice_gets_variants_at_send_time_and_the_rest_waits_for_the_winner(planned: Engine) -> None:
    found = rows(planned)
    assert len(found) == CONTACTS
    first = [r for r in found if r.reason is None]
    rest = [r for r in found if r.reason == AWAITING_TEST]
    assert len(first) + len(rest) == CONTACTS
    assert abs(len(first) - CONTACTS * 0.2) < 60
    assert {r.scheduled_for for r in first} == {SEND_AT}
    assert {r.variant for r in first} == {"greeting-a", "greeting-b"}
    assert {r.scheduled_for for r in rest} == {SEND_AT + timedelta(hours=4)}
    assert {(r.variant, r.template, r.state) for r in rest} == {(None, "greeting-a", "pending")}
    with planned.connect() as conn:
        (test,) = load_tests(conn)
    assert (test.metric, test.status, test.decide_at, test.variants) == (
        "clicks",
        "testing",
        SEND_AT + timedelta(hours=4),
        ("greeting-a", "greeting-b"),
    )


def test_planning_the_occurrence_again_adds_no_row_and_no_second_test(
    planned: Engine, tmp_path: Path
) -> None:
    plan(planned, tmp_path, greetings())
    assert len(rows(planned)) == CONTACTS
    with planned.connect() as conn:
        assert len(load_tests(conn)) == 1


def test_claims_never_take_a_row_awaiting_its_test_even_when_due(planned: Engine) -> None:
    later = SEND_AT + timedelta(hours=6)
    claimed = claim_due(planned, now=later, limit=5_000, lease_seconds=60, worker_id="w")
    by_id = {r.id: r for r in rows(planned)}
    assert claimed and all(by_id[i].reason is None for i in claimed)
    assert all(by_id[i].state == "claimed" for i in claimed)
    assert sum(1 for r in by_id.values() if r.reason == AWAITING_TEST and r.state == "pending") == len(
        by_id
    ) - len(claimed)


def test_more_clicks_on_b_send_b_to_the_rest_with_its_confidence(planned: Engine, tmp_path: Path) -> None:
    first = [r for r in rows(planned) if r.reason is None]
    send(planned, [r.id for r in first], SEND_AT)
    b = [r for r in first if r.variant == "greeting-b"]
    a = [r for r in first if r.variant == "greeting-a"]
    events(planned, b[: len(b) // 3], "click", SEND_AT + timedelta(minutes=30))
    events(planned, a[:2], "click", SEND_AT + timedelta(minutes=30))
    events(planned, a[2:40], "machine_open", SEND_AT + timedelta(minutes=1))  # a prefetch is no click
    clock = FakeClock(SEND_AT + timedelta(hours=3))
    assert decide_due_tests(planned, workspace(greetings()), clock, settings(tmp_path)) == []
    clock.set(SEND_AT + timedelta(hours=4))
    (decision,) = decide_due_tests(planned, workspace(greetings()), clock, settings(tmp_path))
    assert (decision.status, decision.winner) == ("decided", "greeting-b")
    assert decision.confidence is not None and decision.confidence > 0.99
    assert decision.released == CONTACTS - len(first)
    rest = [r for r in rows(planned) if r.id not in {f.id for f in first}]
    assert {(r.template, r.variant, r.reason) for r in rest} == {("greeting-b", "greeting-b", None)}
    arms = {arm.label: arm for arm in decision.arms}
    assert (arms["greeting-a"].moments.total, arms["greeting-b"].moments.total) == (2, len(b) // 3)
    claimed = claim_due(planned, now=clock.now(), limit=5_000, lease_seconds=60, worker_id="w")
    assert len(claimed) == CONTACTS - len(first)
    verdict = verdict_source(planned)(StatsKey("greetings", "greeting"))
    assert verdict is not None and (verdict.status, verdict.winner) == ("decided", "greeting-b")


def test_a_difference_below_95_percent_sends_the_control_and_says_tie(
    planned: Engine, tmp_path: Path
) -> None:
    first = [r for r in rows(planned) if r.reason is None]
    send(planned, [r.id for r in first], SEND_AT)
    b = [r for r in first if r.variant == "greeting-b"]
    a = [r for r in first if r.variant == "greeting-a"]
    events(planned, b[:6], "click", SEND_AT + timedelta(minutes=5))
    events(planned, a[:4], "click", SEND_AT + timedelta(minutes=5))
    clock = FakeClock(SEND_AT + timedelta(hours=5))
    (decision,) = decide_due_tests(planned, workspace(greetings()), clock, settings(tmp_path))
    assert (decision.status, decision.winner) == ("tie", "greeting-a")
    assert decision.confidence is not None and 0.5 < decision.confidence < 0.95
    rest = [r for r in rows(planned) if r.id not in {f.id for f in first}]
    assert {(r.template, r.variant, r.reason) for r in rest} == {("greeting-a", "greeting-a", None)}
    # decided once: the figures stay as the decision saw them
    events(planned, b[6:60], "click", SEND_AT + timedelta(hours=6))
    assert decide_due_tests(planned, workspace(greetings()), clock, settings(tmp_path)) == []


def test_clicks_after_the_decision_moment_do_not_count(planned: Engine, tmp_path: Path) -> None:
    first = [r for r in rows(planned) if r.reason is None]
    send(planned, [r.id for r in first], SEND_AT)
    b = [r for r in first if r.variant == "greeting-b"]
    events(planned, b[: len(b) // 2], "click", SEND_AT + timedelta(hours=9))  # drawn ahead, in the future
    (decision,) = decide_due_tests(
        planned, workspace(greetings()), FakeClock(SEND_AT + timedelta(hours=4)), settings(tmp_path)
    )
    assert decision.status == "tie" and all(arm.moments.total == 0 for arm in decision.arms)


def test_revenue_per_recipient_decides_with_welchs_t(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(store_engine, [{"id": i, "email": f"c{i}@example.com"} for i in range(1, CONTACTS + 1)])
    by_revenue = greetings(by="revenue", share="50%")
    plan(store_engine, tmp_path, by_revenue)
    first = [r for r in rows(store_engine) if r.reason is None]
    send(store_engine, [r.id for r in first], SEND_AT)
    orders = []
    for index, row in enumerate(first):
        big = row.variant == "greeting-b"
        if index % 3 == 0 or big and index % 3 == 1:
            orders.append(
                {
                    "external_id": f"o{row.id}",
                    "contact_id": row.contact_id,
                    "placed_at": SEND_AT + timedelta(hours=1),
                    "total": 90 if big else 40,
                    "currency": "EUR",
                }
            )
    add_orders(store_engine, orders)
    clock = FakeClock(SEND_AT + timedelta(hours=4))
    (decision,) = decide_due_tests(store_engine, workspace(by_revenue), clock, settings(tmp_path))
    assert (decision.metric, decision.status, decision.winner) == ("revenue", "decided", "greeting-b")
    with store_engine.connect() as conn:
        (test,) = load_tests(conn)
    assert test.figures["test"] == "welch_t" and test.figures["currency"] == "EUR"


def test_a_flow_gives_the_slice_variants_and_the_rest_the_winner_once_decided(
    store_engine: Engine, tmp_path: Path
) -> None:
    flow = campaign(
        "ideas-flow",
        trigger={"at": "2026-12-14T10:00"},
        steps=[
            {"wait": "1h"},
            {
                "id": "ideas",
                "send": {
                    "variants": VARIANTS,
                    "test": {"share": "30%", "decide_after": "4h", "by": "clicks"},
                },
            },
        ],
    )
    add_contacts(store_engine, [{"id": i, "email": f"c{i}@example.com"} for i in range(1, 301)])
    ws = workspace(flow)
    clock = FakeClock(SEND_AT)
    occurrence = current_occurrence(flow, SEND_AT, ws.schedules, default_zone=ZoneInfo("UTC"))
    plan_occurrence(store_engine, ws, flow, occurrence, clock=clock, settings=settings(tmp_path))
    advance_due(store_engine, ws, clock, settings(tmp_path))
    clock.set(SEND_AT + timedelta(hours=1))
    advance_due(store_engine, ws, clock, settings(tmp_path))
    found = rows(store_engine)
    first = [r for r in found if r.reason is None]
    waiting = [r for r in found if r.reason == AWAITING_TEST]
    assert len(found) == 300 and first and waiting
    assert {r.scheduled_for for r in waiting} == {SEND_AT + timedelta(hours=5)}
    send(store_engine, [r.id for r in first], clock.now())
    events(store_engine, [r for r in first if r.variant == "greeting-b"], "click", clock.now())
    clock.set(SEND_AT + timedelta(hours=5))
    (decision,) = decide_due_tests(store_engine, ws, clock, settings(tmp_path))
    assert (decision.occurrence, decision.winner, decision.released) == ("*", "greeting-b", len(waiting))
    # a contact outside the slice who reaches the step after the decision gets the winner at once
    late_id = next(i for i in range(301, 400) if not ab.in_share(i, ab.test_key("ideas-flow", "ideas"), 0.3))
    add_contacts(store_engine, [{"id": late_id, "email": "late@example.com"}])
    plan_occurrence(store_engine, ws, flow, occurrence, clock=clock, settings=settings(tmp_path))
    clock.set(SEND_AT + timedelta(hours=6))
    advance_due(store_engine, ws, clock, settings(tmp_path))  # its wait: 1h
    clock.set(SEND_AT + timedelta(hours=7))
    advance_due(store_engine, ws, clock, settings(tmp_path))
    (late,) = [r for r in rows(store_engine) if r.contact_id == late_id]
    assert (late.variant, late.template, late.reason, late.scheduled_for) == (
        "greeting-b",
        "greeting-b",
        None,
        clock.now(),
    )
