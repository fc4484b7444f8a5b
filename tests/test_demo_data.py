"""The demo shop: exactly N contacts, the same rows for the same seed, and a season that hangs together."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.demo import DemoDataError, ShopBuilder, default_season, generate_demo_shop
from engine.store import make_engine, upgrade
from engine.store.models import ALL_TABLES, Consent, Contact, GiftCard, ShopEvent, ShopOrder, Suppression
from engine.transfer import refresh_contact_aggregates
from engine.transfer.event_data import DATA_SCHEMAS, MESSAGE_MAX_CHARS

CONTACT, ORDER, CARD, EVENT = (m.__table__ for m in (Contact, ShopOrder, GiftCard, ShopEvent))  # type: ignore[attr-defined]
TODAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _clock() -> FakeClock:
    return FakeClock(TODAY)


def _rows(engine: Engine, model: Any) -> list[tuple[Any, ...]]:
    table = model.__table__
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(table).order_by(table.c.id))]


def _fresh_sqlite(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


@pytest.mark.parametrize("size", [1, 7, 240])
def test_demo_data_makes_exactly_the_contacts_asked_for(store_engine: Engine, size: int) -> None:
    summary = generate_demo_shop(store_engine, contacts=size, seed=11, season=2026, clock=_clock())
    with store_engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(CONTACT)).scalar_one()
    assert stored == size == summary.contacts
    assert sum(summary.contacts_by_country.values()) == size


def test_same_seed_gives_identical_rows(tmp_path: Path) -> None:
    first, second = _fresh_sqlite(tmp_path / "a.db"), _fresh_sqlite(tmp_path / "b.db")
    generate_demo_shop(first, contacts=300, seed=42, season=2026, clock=_clock())
    generate_demo_shop(second, contacts=300, seed=42, season=2026, clock=_clock())
    for model in (Contact, Consent, Suppression, ShopOrder, GiftCard, ShopEvent):
        assert _rows(first, model) == _rows(second, model), model.__tablename__


def test_another_seed_gives_another_shop() -> None:
    one = ShopBuilder(contacts=200, seed=1, season=2026).build()
    two = ShopBuilder(contacts=200, seed=2, season=2026).build()
    assert [c["email"] for c in one.contacts] != [c["email"] for c in two.contacts]


def test_refuses_a_store_that_already_has_contacts(store_engine: Engine) -> None:
    generate_demo_shop(store_engine, contacts=20, seed=1, season=2026, clock=_clock())
    with pytest.raises(DemoDataError, match="already has 20 contacts") as caught:
        generate_demo_shop(store_engine, contacts=20, seed=2, season=2026, clock=_clock())
    assert caught.value.exit_code == 2


def test_append_adds_another_seed_beside_the_first_but_not_the_same_seed_twice(store_engine: Engine) -> None:
    generate_demo_shop(store_engine, contacts=60, seed=1, season=2026, clock=_clock())
    generate_demo_shop(store_engine, contacts=40, seed=2, season=2026, clock=_clock(), append=True)
    with store_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CONTACT)).scalar_one() == 100
    with pytest.raises(DemoDataError, match="seed 2 is already in the store"):
        generate_demo_shop(store_engine, contacts=40, seed=2, season=2026, clock=_clock(), append=True)


def test_new_rows_after_a_demo_load_get_fresh_ids(store_engine: Engine) -> None:
    generate_demo_shop(store_engine, contacts=30, seed=3, season=2026, clock=_clock())
    with store_engine.begin() as conn:
        new_id = conn.execute(
            insert(CONTACT).returning(CONTACT.c.id),
            {"email": "late.comer@example.com", "tags": [], "attributes": {}, "total_spent": 0},
        ).scalar_one()
        highest = conn.execute(
            select(func.max(CONTACT.c.id)).where(CONTACT.c.email != "late.comer@example.com")
        )
        assert new_id > highest.scalar_one()


@pytest.mark.parametrize(
    ("today", "season"),
    [
        (datetime(2026, 11, 23, tzinfo=UTC), 2026),
        (datetime(2026, 12, 31, tzinfo=UTC), 2026),
        (datetime(2027, 1, 15, tzinfo=UTC), 2026),
        (datetime(2027, 3, 1, tzinfo=UTC), 2027),
    ],
)
def test_default_season_is_the_one_containing_today_or_the_next(today: datetime, season: int) -> None:
    assert default_season(today) == season


def test_default_season_comes_from_the_clock(sqlite_engine: Engine) -> None:
    summary = generate_demo_shop(
        sqlite_engine, contacts=80, seed=5, clock=FakeClock(datetime(2027, 1, 10, tzinfo=UTC))
    )
    assert summary.season == 2026
    with sqlite_engine.connect() as conn:
        latest = conn.execute(select(func.max(ORDER.c.placed_at))).scalar_one()
    assert latest.year == 2027 and latest.month == 1


def test_contact_aggregates_match_their_orders(store_engine: Engine) -> None:
    generate_demo_shop(store_engine, contacts=150, seed=8, season=2026, clock=_clock())
    before = _rows(store_engine, Contact)
    with store_engine.begin() as conn:
        ids = list(conn.execute(select(CONTACT.c.id)).scalars())
        refresh_contact_aggregates(conn, ids)
    assert _rows(store_engine, Contact) == before
    assert any(row[CONTACT.c.keys().index("orders_count")] > 0 for row in before)


def test_every_order_and_card_has_events_at_the_same_moments(sqlite_engine: Engine) -> None:
    generate_demo_shop(sqlite_engine, contacts=400, seed=9, season=2026, clock=_clock())
    with sqlite_engine.connect() as conn:
        orders = {row.external_id: row for row in conn.execute(select(ORDER))}
        cards = {row.external_id: row for row in conn.execute(select(CARD))}
        events = list(conn.execute(select(EVENT)))
    placed = {e.payload["order_id"]: e for e in events if e.type == "order.placed"}
    assert placed.keys() == orders.keys()
    for order_id, event in placed.items():
        assert event.occurred_at == orders[order_id].placed_at
        assert event.contact_id == orders[order_id].contact_id
    for event in events:
        if event.type == "order.delivered":
            assert event.occurred_at == orders[event.payload["order_id"]].delivered_at
        if event.type == "gift_card.redeemed":
            card = cards[event.payload["gift_card_id"]]
            assert event.occurred_at == card.redeemed_at
            assert event.contact_id == card.recipient_contact_id
        if event.type == "gift_card.purchased":
            assert event.contact_id == cards[event.payload["gift_card_id"]].purchaser_contact_id
    assert len({e.external_id for e in events}) == len(events)
    assert {e.type for e in events} >= {
        "order.placed",
        "order.shipped",
        "order.delivered",
        "order.problem",
        "return.requested",
        "exchange.requested",
        "gift_card.purchased",
        "gift_card.redeemed",
        "site.first_visit",
    }


def test_gift_card_recipients_are_new_contacts_whose_orders_follow_their_card(sqlite_engine: Engine) -> None:
    generate_demo_shop(sqlite_engine, contacts=600, seed=10, season=2026, clock=_clock())
    with sqlite_engine.connect() as conn:
        cards = list(conn.execute(select(CARD)))
        orders = list(conn.execute(select(ORDER)))
    assert cards
    by_contact: dict[int, list[Any]] = {}
    for order in orders:
        by_contact.setdefault(order.contact_id, []).append(order)
    spent_more = 0
    for card in cards:
        assert card.recipient_contact_id != card.purchaser_contact_id
        assert by_contact.get(card.purchaser_contact_id), "purchasers are customers"
        own = by_contact.get(card.recipient_contact_id, [])
        if card.redeemed_at is None:
            assert not own and card.balance == card.amount
            continue
        assert date(2026, 12, 24) <= card.redeemed_at.date() <= date(2027, 1, 31)
        assert all(order.placed_at > card.redeemed_at for order in own)
        assert Decimal("0") <= card.balance <= card.amount
        spent_more += any(order.total > card.amount for order in own)
    assert spent_more > 0


def test_the_season_runs_from_november_into_january() -> None:
    rows = ShopBuilder(contacts=1500, seed=12, season=2026).build()
    holiday = [o for o in rows.orders if o["placed_at"] >= datetime(2026, 11, 1, tzinfo=UTC)]
    assert holiday and min(o["placed_at"] for o in rows.orders).year == 2026
    assert any(o["placed_at"] < datetime(2026, 11, 1, tzinfo=UTC) for o in rows.orders), (
        "older orders for win-back"
    )
    late = [
        e
        for e in rows.events
        if e["type"] in ("return.requested", "exchange.requested", "gift_card.redeemed")
    ]
    assert any(e["occurred_at"].year == 2027 for e in late)
    statuses = Counter(o["status"] for o in rows.orders)
    assert statuses["delivered"] > statuses["problem"] > 0 and statuses["returned"] > 0
    assert {o["problem"] for o in rows.orders if o["problem"]} == {"late", "damaged", "lost"}
    assert any(o["is_gift"] for o in holiday)


def test_customers_come_from_three_markets_with_their_locales_zones_and_consent() -> None:
    rows = ShopBuilder(contacts=3000, seed=13, season=2026).build()
    countries = Counter(c["country"] for c in rows.contacts)
    assert abs(countries["EE"] / 3000 - 0.35) < 0.04
    assert abs(countries["RO"] / 3000 - 0.40) < 0.04
    assert abs(countries["US"] / 3000 - 0.25) < 0.04
    locales = Counter(c["locale"] for c in rows.contacts)
    assert locales["et"] and locales["ro"] and locales["en"] and locales["ro-RO"] and locales[None]
    zones = {c["timezone"] for c in rows.contacts}
    assert zones == {
        "Europe/Tallinn",
        "Europe/Bucharest",
        "America/New_York",
        "America/Chicago",
        "America/Los_Angeles",
    }
    open_email = {
        c["contact_id"] for c in rows.consents if c["channel"] == "email" and c["withdrawn_at"] is None
    }
    assert 0.62 < len(open_email) / 3000 < 0.78
    assert {c["source"] for c in rows.consents} >= {"checkout", "newsletter_form", "import"}
    assert any(c["withdrawn_at"] for c in rows.consents)
    assert all(c["wording_version"] and c["legal_basis"] == "consent" for c in rows.consents)
    assert {s["reason"] for s in rows.suppressions} >= {"hard_bounce", "unsubscribe"}
    assert any(c["x_handle"] for c in rows.contacts)
    assert any("vip" in c["tags"] for c in rows.contacts)
    assert any("favourite_category" in c["attributes"] for c in rows.contacts)
    currencies = {(o["shipping_country"], o["currency"]) for o in rows.orders}
    assert currencies == {("EE", "EUR"), ("RO", "RON"), ("RO", "EUR"), ("US", "USD")}


def test_no_table_outside_the_shop_is_touched(sqlite_engine: Engine) -> None:
    generate_demo_shop(sqlite_engine, contacts=50, seed=14, season=2026, clock=_clock())
    shop = {"contact", "consent", "suppression", "shop_order", "gift_card", "shop_event"}
    with sqlite_engine.connect() as conn:
        for model in ALL_TABLES:
            if model.__tablename__ not in shop:
                count = conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()  # type: ignore[attr-defined]
                assert count == 0, model.__tablename__


def test_cards_bought_for_someone_name_their_recipient_and_arrive_on_december_days() -> None:
    rows = ShopBuilder(contacts=2000, seed=14, season=2026).build()
    contacts = rows.contacts
    by_email = {contact["email"]: contact for contact in contacts}
    purchases = [e for e in rows.events if e["type"] == "gift_card.purchased"]
    assert purchases
    for event in purchases:
        data = event["payload"]
        recipient = by_email[data["recipient_email"]]
        assert data["recipient_name"] == f"{recipient['first_name']} {recipient['last_name']}"
        assert data.get("recipient_locale") == recipient["locale"]
        assert data["recipient_country"] == recipient["country"]
        assert "gift-card-recipient" in recipient["tags"]  # new to the shop
        assert len(data.get("message", "")) <= MESSAGE_MAX_CHARS
    scheduled = [e for e in purchases if "send_on" in e["payload"]]
    assert 0 < len(scheduled) < len(purchases)
    assert {date.fromisoformat(e["payload"]["send_on"]).month for e in scheduled} == {12}
    assert any("\n" in e["payload"].get("message", "") for e in purchases)
    redeemed = {
        e["payload"]["gift_card_id"]: e["occurred_at"]
        for e in rows.events
        if e["type"] == "gift_card.redeemed"
    }
    for event in scheduled:
        card_id = event["payload"]["gift_card_id"]
        if card_id in redeemed:
            assert redeemed[card_id].date() >= date.fromisoformat(event["payload"]["send_on"])


def test_returns_exchanges_and_claims_fall_from_late_december_into_january() -> None:
    rows = ShopBuilder(contacts=3000, seed=15, season=2026).build()
    events = rows.events
    opened = {e["payload"]["claim_id"]: e for e in events if e["type"] == "claim.opened"}
    resolved = [e for e in events if e["type"] == "claim.resolved"]
    assert opened and resolved and len(resolved) < len(opened)
    for event in resolved:
        assert event["occurred_at"] > opened[event["payload"]["claim_id"]]["occurred_at"]
    assert any("order_id" not in e["payload"] for e in opened.values()), "a claim about a gift card, no order"
    requested = {
        e["payload"]["order_id"]: e["occurred_at"] for e in events if e["type"] == "exchange.requested"
    }
    shipped = [e for e in events if e["type"] == "exchange.shipped"]
    assert shipped and all(e["occurred_at"] > requested[e["payload"]["order_id"]] for e in shipped)
    zones = {index: ZoneInfo(contact["timezone"]) for index, contact in enumerate(rows.contacts)}
    for event in events:  # people file claims while awake; support answers and ships in office hours
        local_hour = event["occurred_at"].astimezone(zones[event["contact_id"]]).hour
        if event["type"] == "claim.opened":
            assert 8 <= local_hour < 22
        elif event["type"] in ("claim.resolved", "exchange.shipped"):
            assert 9 <= local_hour < 17
    season = (datetime(2026, 12, 15, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))
    for kind in ("claim.opened", "exchange.requested", "exchange.shipped"):
        moments = sorted(e["occurred_at"] for e in events if e["type"] == kind)
        assert season[0] <= moments[0] and moments[-1] < season[1], kind
        assert moments[len(moments) // 2] >= datetime(2026, 12, 24, tzinfo=UTC), kind


def test_every_demo_event_fits_the_schema_the_events_api_checks() -> None:
    rows = ShopBuilder(contacts=1500, seed=16, season=2026).build()
    for event in rows.events:
        schema = DATA_SCHEMAS.get(event["type"])
        if schema is not None:
            schema.model_validate(event["payload"])


def test_the_summary_counts_the_care_side_of_the_season(sqlite_engine: Engine) -> None:
    summary = generate_demo_shop(sqlite_engine, contacts=1200, seed=17, season=2026, clock=_clock())
    by_type = summary.events_by_type
    assert summary.returns == by_type["return.requested"] > 0
    assert summary.exchanges == by_type["exchange.requested"] > 0
    assert summary.exchanges_shipped == by_type["exchange.shipped"] > 0
    assert summary.claims == by_type["claim.opened"] > summary.claims_open > 0
    assert summary.claims - summary.claims_open == by_type["claim.resolved"]
    with sqlite_engine.connect() as conn:
        payloads = conn.execute(
            select(EVENT.c.payload).where(EVENT.c.type == "gift_card.purchased")
        ).scalars()
        assert summary.gift_cards_scheduled == sum(1 for payload in payloads if "send_on" in payload) > 0
