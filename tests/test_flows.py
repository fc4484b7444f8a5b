"""The flow stepper: sends, waits, event waits, branches, coupons, A/B variants, goals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact
from test_dispatch_support import campaign, workspace

from engine.clock import FakeClock
from engine.runtime import variants as ab
from engine.runtime.flows import advance_due, next_local_time, on_events
from engine.settings import Settings
from engine.store.models import Coupon, Delivery, Enrolment, GiftCard, ShopEvent

SETTINGS = Settings(secret_key="k" * 40)

GIFT_FLOW: list[Any] = [
    {"id": "welcome", "send": {"channel": "email", "template": "receipt"}},
    {"wait": "2d"},
    {
        "if": "gift_card and gift_card.balance > 0",
        "then": [
            {"coupon": {"id": "first-order", "percent": 10, "expires_in": "14d", "prefix": "HELLO"}},
            {
                "id": "ideas",
                "send": {
                    "channel": "email",
                    "variants": [
                        {"template": "greeting", "weight": 50},
                        {"template": "receipt", "weight": 50},
                    ],
                },
            },
        ],
        "else": ["exit"],
    },
    {"wait": {"for_event": "order.placed", "timeout": "7d"}},
    {"wait": {"duration": "1d", "until_time": "10:00"}},
    {"id": "balance", "send": {"channel": "email", "template": "greeting"}},
]


def gift_campaign() -> Any:
    return campaign(
        "gift-card-welcome",
        trigger={"event": {"type": "gift_card.redeemed"}},
        goal={"event": "order.placed"},
        steps=GIFT_FLOW,
    )


def enrol(engine: Engine, contact: int, now: datetime, campaign_id: str = "gift-card-welcome") -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(Enrolment)
                .values(
                    campaign_id=campaign_id,
                    contact_id=contact,
                    occurrence="once",
                    state="active",
                    step_path="0",
                    wake_at=now,
                    variants={},
                    context={},
                    created_at=now,
                    updated_at=now,
                )
                .returning(Enrolment.id)
            ).scalar_one()
        )


def add_card(engine: Engine, contact: int, now: datetime, balance: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(GiftCard).values(
                external_id=f"gc-{contact}",
                recipient_contact_id=contact,
                amount=Decimal("50"),
                balance=Decimal(balance),
                currency="EUR",
                issued_at=now,
                is_digital=True,
            )
        )


def add_event(engine: Engine, contact: int, kind: str, at: datetime) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(ShopEvent)
                .values(
                    external_id=f"{kind}-{contact}-{at.isoformat()}",
                    type=kind,
                    contact_id=contact,
                    occurred_at=at,
                    payload={},
                )
                .returning(ShopEvent.id)
            ).scalar_one()
        )


def enrolment(engine: Engine, enrolment_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Enrolment.__table__).where(Enrolment.__table__.c.id == enrolment_id)).one()  # type: ignore[attr-defined]


def deliveries(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Delivery.__table__).order_by(Delivery.__table__.c.id)))  # type: ignore[attr-defined]


def test_flow_sends_the_welcome_then_waits_two_days(store_engine: Engine, clock: FakeClock) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    row = enrol(store_engine, contact, clock.now())
    stats = advance_due(store_engine, workspace(gift_campaign()), clock, SETTINGS)
    assert (stats.deliveries, stats.waiting) == (1, 1)
    (welcome,) = deliveries(store_engine)
    assert (welcome.step_id, welcome.template, welcome.enrolment_id) == ("welcome", "receipt", row)
    assert welcome.idempotency_key == f"gift-card-welcome:welcome:{contact}:once"
    state = enrolment(store_engine, row)
    assert (state.step_path, state.wake_at) == ("2", clock.now() + timedelta(days=2))
    assert advance_due(store_engine, workspace(gift_campaign()), clock, SETTINGS).deliveries == 0


def test_card_with_balance_gets_a_coupon_and_a_stable_ab_variant(
    store_engine: Engine, clock: FakeClock
) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    add_card(store_engine, contact, clock.now(), "30.00")
    row = enrol(store_engine, contact, clock.now())
    advance_due(store_engine, workspace(gift_campaign()), clock, SETTINGS)
    clock.advance(timedelta(days=2))
    stats = advance_due(store_engine, workspace(gift_campaign()), clock, SETTINGS)
    assert (stats.coupons, stats.deliveries) == (1, 1)
    ideas = deliveries(store_engine)[-1]
    expected = ab.assign(
        contact, "gift-card-welcome", [ab.Variant(t, t, 50) for t in ("greeting", "receipt")]
    )
    assert (ideas.step_id, ideas.variant, ideas.template) == ("ideas", expected.label, expected.template)
    with store_engine.connect() as conn:
        code = conn.execute(select(Coupon.code)).scalar_one()  # type: ignore[call-overload]
    assert code.startswith("HELLO-") and ideas.context["coupon"]["code"] == code
    state = enrolment(store_engine, row)
    assert state.variants == {"ideas": expected.label}
    assert (state.state, state.waiting_for) == ("waiting", "order.placed")


def test_card_without_balance_exits_the_flow(store_engine: Engine, clock: FakeClock) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    add_card(store_engine, contact, clock.now(), "0")
    row = enrol(store_engine, contact, clock.now())
    advance_due(store_engine, workspace(gift_campaign()), clock, SETTINGS)
    clock.advance(timedelta(days=2))
    assert advance_due(store_engine, workspace(gift_campaign()), clock, SETTINGS).exited == 1
    assert (enrolment(store_engine, row).state, enrolment(store_engine, row).end_reason) == ("exited", "exit")


def test_event_wait_times_out_then_waits_until_the_contacts_next_ten_oclock(
    store_engine: Engine, clock: FakeClock
) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now(), timezone="America/New_York")
    add_card(store_engine, contact, clock.now(), "30.00")
    row = enrol(store_engine, contact, clock.now())
    flow = workspace(gift_campaign())
    advance_due(store_engine, flow, clock, SETTINGS)
    clock.advance(timedelta(days=2))
    advance_due(store_engine, flow, clock, SETTINGS)
    clock.advance(timedelta(days=7))
    advance_due(store_engine, flow, clock, SETTINGS)
    woke = clock.now() + timedelta(days=1)  # Dec 11 08:00 UTC = 03:00 New York
    assert enrolment(store_engine, row).wake_at == datetime(2026, 12, 11, 15, 0, tzinfo=UTC)  # 10:00 New York
    assert woke < enrolment(store_engine, row).wake_at
    clock.set(datetime(2026, 12, 11, 15, 0, tzinfo=UTC))
    stats = advance_due(store_engine, flow, clock, SETTINGS)
    assert (stats.deliveries, stats.completed) == (1, 1)
    assert deliveries(store_engine)[-1].step_id == "balance"


def test_goal_event_converts_the_enrolment_and_stops_further_sends(
    store_engine: Engine, clock: FakeClock
) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    add_card(store_engine, contact, clock.now(), "30.00")
    row = enrol(store_engine, contact, clock.now())
    flow = workspace(gift_campaign())
    advance_due(store_engine, flow, clock, SETTINGS)
    clock.advance(timedelta(hours=5))
    event = add_event(store_engine, contact, "order.placed", clock.now())
    assert on_events(store_engine, flow, [event], clock, SETTINGS).converted == 1
    clock.advance(timedelta(days=30))
    advance_due(store_engine, flow, clock, SETTINGS)
    assert enrolment(store_engine, row).state == "converted"
    assert [d.step_id for d in deliveries(store_engine)] == ["welcome"]


def test_awaited_event_wakes_a_waiting_enrolment_early(store_engine: Engine, clock: FakeClock) -> None:
    waiting = campaign(
        "exchange-help",
        trigger={"event": {"type": "order.delivered"}},
        steps=[
            {"wait": {"for_event": "return.requested", "timeout": "7d"}},
            {"id": "help", "send": {"template": "receipt"}},
        ],
    )
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    row = enrol(store_engine, contact, clock.now(), campaign_id="exchange-help")
    advance_due(store_engine, workspace(waiting), clock, SETTINGS)
    assert enrolment(store_engine, row).state == "waiting"
    clock.advance(timedelta(hours=3))
    event = add_event(store_engine, contact, "return.requested", clock.now())
    stats = on_events(store_engine, workspace(waiting), [event], clock, SETTINGS)
    assert (stats.woken, stats.deliveries, stats.completed) == (1, 1, 1)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (
            datetime(2026, 12, 1, 7, 0, tzinfo=UTC),
            datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        ),  # 09:00 → 10:00 Tallinn
        (
            datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
            datetime(2026, 12, 2, 8, 0, tzinfo=UTC),
        ),  # 11:00 → next day
    ],
)
def test_until_time_is_the_next_such_time_in_the_contacts_zone(after: datetime, expected: datetime) -> None:
    from datetime import time

    assert next_local_time(after, time(10), ZoneInfo("Europe/Tallinn")) == expected
