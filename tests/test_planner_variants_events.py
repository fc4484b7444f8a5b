"""A/B variants (stable, weighted, SQL == Python), event enrolment, and plan counts against plain SQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from test_planner_support import add_contacts, add_orders, campaign, settings, workspace

from engine.clock import FakeClock
from engine.runtime import variants as ab
from engine.runtime.enrolment import enrol_for_events
from engine.runtime.occurrences import current_occurrence
from engine.runtime.planner import plan_occurrence
from engine.store.models import Consent, Delivery, Enrolment, ShopEvent, Suppression
from engine.workspace.segments import Segment

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
AB = [
    {"template": "ideas-a", "weight": 80},
    {"template": "ideas-b", "weight": 20},
]


def ab_campaign() -> object:
    return campaign(
        "ideas", trigger={"at": "2026-12-14T10:00"}, steps=[{"id": "ideas", "send": {"variants": AB}}]
    )


def test_variant_in_the_outbox_is_the_one_the_flow_stepper_computes(
    store_engine: Engine, tmp_path: Path
) -> None:
    add_contacts(store_engine, [{"id": i, "email": f"c{i}@example.com"} for i in range(1, 401)])
    ideas = ab_campaign()
    plan_occurrence(
        store_engine,
        workspace(),
        ideas,
        current_occurrence(ideas, NOW, workspace().schedules, default_zone=ZoneInfo("UTC")),
        clock=FakeClock(NOW),
        settings=settings(tmp_path),
    )
    choices = [ab.Variant(v["template"], v["template"], v["weight"]) for v in AB]  # type: ignore[arg-type]
    with store_engine.connect() as conn:
        rows = conn.execute(select(DELIVERY.c.contact_id, DELIVERY.c.variant, DELIVERY.c.template)).all()
    assert len(rows) == 400
    for contact_id, variant, template in rows:
        expected = ab.assign(contact_id, "ideas", choices)
        assert (variant, template) == (expected.label, expected.template)


def test_variants_split_by_weight_and_stay_put_for_each_contact() -> None:
    choices = [ab.Variant("a", "a", 80), ab.Variant("b", "b", 20)]
    picks = [ab.assign(contact_id, "ideas", choices).label for contact_id in range(1, 20_001)]
    share = picks.count("a") / len(picks)
    assert 0.78 < share < 0.82
    assert picks == [ab.assign(contact_id, "ideas", choices).label for contact_id in range(1, 20_001)]
    other = [ab.assign(contact_id, "other", choices).label for contact_id in range(1, 20_001)]
    assert other != picks  # each campaign splits independently


def _event(engine: Engine, event_id: int, contact_id: int, kind: str, payload: dict[str, object]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ShopEvent.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": event_id,
                    "external_id": f"e{event_id}",
                    "type": kind,
                    "contact_id": contact_id,
                    "occurred_at": NOW,
                    "payload": payload,
                }
            ],
        )


def test_events_enrol_their_contact_once_per_contact_when_asked(store_engine: Engine, tmp_path: Path) -> None:
    add_contacts(
        store_engine,
        [
            {"id": 1, "email": "new@example.com", "orders_count": 0},
            {"id": 2, "email": "old@example.com", "orders_count": 5},
        ],
    )
    welcome = campaign(
        "gift-card-welcome",
        category="transactional",
        audience={"where": [{"orders_count": {"lt": 100}}]},
        trigger={
            "event": {
                "type": "gift_card.redeemed",
                "where": "contact.orders_count == 0",
                "once_per_contact": True,
            }
        },
        steps=[
            {"send": {"template": "gift-card-welcome"}},
            {"wait": "2d"},
            {"send": {"template": "balance"}},
        ],
    )
    ws = workspace(welcome)
    _event(store_engine, 10, 1, "gift_card.redeemed", {})
    _event(store_engine, 11, 2, "gift_card.redeemed", {})  # has ordered before: the where excludes them
    _event(store_engine, 12, 1, "gift_card.redeemed", {})  # a second card: once per contact
    _event(store_engine, 13, 1, "order.placed", {})
    clock = FakeClock(NOW)
    made = enrol_for_events(store_engine, ws, [10, 11, 12, 13], clock, settings(tmp_path)).created
    again = enrol_for_events(store_engine, ws, [10, 11, 12, 13], clock, settings(tmp_path)).created
    table = Enrolment.__table__  # type: ignore[attr-defined]
    with store_engine.connect() as conn:
        rows = conn.execute(select(table.c.contact_id, table.c.occurrence, table.c.event_id)).all()
    assert (made, again) == (1, 0)
    assert rows == [(1, "once", 10)]


def test_plan_count_matches_an_independent_sql_count(store_engine: Engine, tmp_path: Path) -> None:
    rng = random.Random(2026)
    zones = ["Europe/Tallinn", "Europe/Bucharest", "America/New_York", None]
    contacts = [
        {
            "id": i,
            "email": f"shopper{i}@example.com",
            "timezone": rng.choice(zones),
            "country": rng.choice(["EE", "RO", "US"]),
            "locale": rng.choice(["et", "ro", "en"]),
            "tags": ["vip"] if rng.random() < 0.2 else [],
            "total_spent": Decimal(rng.randint(0, 500)),
        }
        for i in range(1, 301)
    ]
    add_contacts(store_engine, contacts, consent=False)
    granted = datetime(2026, 1, 1, tzinfo=UTC)
    with store_engine.begin() as conn:
        conn.execute(
            insert(Consent.__table__),  # type: ignore[attr-defined]
            [
                {
                    "contact_id": c["id"],
                    "channel": "email",
                    "granted_at": granted,
                    "withdrawn_at": granted + timedelta(days=30) if rng.random() < 0.15 else None,
                }
                for c in contacts
                if rng.random() < 0.8
            ],
        )
        conn.execute(
            insert(Suppression.__table__),  # type: ignore[attr-defined]
            [
                {
                    "email": f"shopper{i}@example.com",
                    "channel": rng.choice(["email", "all"]),
                    "reason": rng.choice(["unsubscribe", "hard_bounce"]),
                    "created_at": granted,
                }
                for i in rng.sample(range(1, 301), 25)
            ],
        )
    add_orders(
        store_engine,
        [
            {
                "external_id": f"o{n}",
                "contact_id": rng.randint(1, 300),
                "placed_at": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=rng.randint(0, 24 * 80)),
            }
            for n in range(400)
        ],
    )
    ws = workspace(
        segments={
            "holiday-shoppers": Segment.model_validate(
                {"where": [{"order": {"placed_within": ["2026-11-01", "2026-12-31"]}}]}
            )
        }
    )
    offers = campaign(
        "offers",
        trigger={"at": "2026-12-14T10:00"},
        audience={
            "segment": "holiday-shoppers",
            "where": [{"consent": "email"}, {"any": [{"tag": "vip"}, {"total_spent": {"gte": 250}}]}],
        },
    )
    stats = plan_occurrence(
        store_engine,
        ws,
        offers,
        current_occurrence(offers, NOW, ws.schedules, default_zone=ZoneInfo("UTC")),
        clock=FakeClock(NOW),
        settings=settings(tmp_path),
    )
    independent = text(
        """
        SELECT count(*) FROM contact c
        WHERE c.id IN (SELECT contact_id FROM shop_order
                       WHERE placed_at >= :start AND placed_at < :end)
          AND c.id IN (SELECT contact_id FROM consent WHERE channel = 'email' AND withdrawn_at IS NULL)
          AND c.email NOT IN (SELECT email FROM suppression WHERE channel IN ('email', 'all'))
          AND (c.total_spent >= 250 OR CAST(c.tags AS TEXT) LIKE '%vip%')
        """
    )
    # Day boundaries are midnight in the campaign zone (UTC here); SQLite stores naive UTC text.
    params: dict[str, object] = {
        "start": datetime(2026, 11, 1, tzinfo=UTC),
        "end": datetime(2027, 1, 1, tzinfo=UTC),
    }
    if store_engine.dialect.name == "sqlite":
        params = {
            k: v.replace(tzinfo=None).isoformat(sep=" ") for k, v in params.items() if isinstance(v, datetime)
        }
    with store_engine.connect() as conn:
        expected = conn.execute(independent, params).scalar_one()
        written = conn.execute(select(DELIVERY.c.id)).all()
    assert expected > 10
    assert stats.created == expected == len(written)
