"""Shop-event ingestion: validation errors that say where, idempotency, contacts, consent and aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from engine.feedback.shop_events import InvalidEvents, ingest_events, validate_events
from engine.store.models import Consent, Contact, GiftCard, ShopEvent, ShopOrder

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


def order(
    event_id: str, email: str, order_id: str, total: str, at: datetime, **contact: Any
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order.placed",
        "occurred_at": at.isoformat(),
        "contact": {"email": email, **contact},
        "data": {"order_id": order_id, "total": total, "currency": "EUR", "shipping_method": "standard"},
    }


def _count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model.__table__)).scalar_one())


def test_invalid_events_name_the_event_index_and_the_field() -> None:
    good = order("e1", "a@example.com", "o1", "10.00", NOW)
    bad_total = order("e2", "b@example.com", "o2", "-5", NOW)
    naive = {**order("e3", "c@example.com", "o3", "1", NOW), "occurred_at": "2026-12-10T12:00:00"}
    with pytest.raises(InvalidEvents) as caught:
        validate_events([good, bad_total, naive, {"id": "e4", "type": "nope.happened"}])
    where = {(e.index, e.field) for e in caught.value.errors}
    assert (1, "data.total") in where
    assert (2, "occurred_at") in where
    assert (3, "type") in where and (3, "contact") in where
    assert not any(index == 0 for index, _ in where)


def test_gift_card_redemption_needs_its_balance() -> None:
    event = {
        "id": "g1",
        "type": "gift_card.redeemed",
        "occurred_at": NOW.isoformat(),
        "contact": {"email": "r@example.com"},
        "data": {"gift_card_id": "GC1", "amount": "50", "currency": "EUR"},
    }
    with pytest.raises(InvalidEvents) as caught:
        validate_events(event)
    assert [(e.index, e.field) for e in caught.value.errors] == [(0, "data.balance")]


def test_a_thousand_event_batch_is_stored_once_even_when_posted_twice(store_engine: Engine) -> None:
    batch = [
        order(f"evt-{i}", f"buyer{i % 400}@example.com", f"ord-{i}", "20.50", NOW - timedelta(minutes=i))
        for i in range(1000)
    ]
    events = validate_events(batch)
    first = ingest_events(store_engine, events, now=NOW)
    second = ingest_events(store_engine, events, now=NOW)
    assert (len(first.stored_ids), first.duplicates) == (1000, 0)
    assert (len(second.stored_ids), second.duplicates) == (0, 1000)
    assert _count(store_engine, ShopEvent) == 1000
    assert _count(store_engine, ShopOrder) == 1000
    assert _count(store_engine, Contact) == 400
    with store_engine.connect() as conn:
        row = conn.execute(
            select(Contact.orders_count, Contact.total_spent).where(Contact.email == "buyer7@example.com")  # type: ignore[call-overload]
        ).one()
    assert (row.orders_count, row.total_spent) == (3, Decimal("61.50"))


def test_consent_is_recorded_with_its_evidence_and_withdrawn_later(store_engine: Engine) -> None:
    consent = {
        "email": {"granted": True, "source": "checkout", "wording_version": "v3", "legal_basis": "consent"}
    }
    first = order("c1", "ann@example.com", "o1", "5", NOW, first_name="Ann", locale="et", consent=consent)
    withdrawn = {**order("c2", "ann@example.com", "o2", "5", NOW + timedelta(days=1))}
    withdrawn["contact"]["consent"] = {"email": {"granted": False, "source": "shop account"}}
    ingest_events(store_engine, validate_events([first, withdrawn]), now=NOW)
    with store_engine.connect() as conn:
        rows = conn.execute(select(Consent.__table__)).all()  # type: ignore[attr-defined]
        contact = conn.execute(select(Contact.__table__)).one()  # type: ignore[attr-defined]
    assert len(rows) == 1
    assert (rows[0].source, rows[0].wording_version, rows[0].granted_at) == ("checkout", "v3", NOW)
    assert rows[0].withdrawn_at == NOW + timedelta(days=1)
    assert "shop account" in rows[0].withdrawn_source
    assert (contact.first_name, contact.locale, contact.orders_count) == ("Ann", "et", 2)


def test_gift_card_purchase_and_redemption_build_one_card_with_both_people(store_engine: Engine) -> None:
    bought = {
        "id": "gp1",
        "type": "gift_card.purchased",
        "occurred_at": NOW.isoformat(),
        "contact": {"email": "giver@example.com"},
        "data": {
            "gift_card_id": "GC9",
            "amount": "50",
            "currency": "EUR",
            "recipient_email": "Kid@Example.com",
        },
    }
    redeemed = {
        "id": "gr1",
        "type": "gift_card.redeemed",
        "occurred_at": (NOW + timedelta(days=14)).isoformat(),
        "contact": {"email": "kid@example.com", "locale": "ro"},
        "data": {"gift_card_id": "GC9", "amount": "50", "balance": "35.5", "currency": "EUR"},
    }
    ingest_events(store_engine, validate_events([bought, redeemed]), now=NOW)
    with store_engine.connect() as conn:
        card = conn.execute(select(GiftCard.__table__)).one()  # type: ignore[attr-defined]
        ids = dict(conn.execute(select(Contact.email, Contact.id)).all())  # type: ignore[call-overload]
    assert card.purchaser_contact_id == ids["giver@example.com"]
    assert card.recipient_contact_id == ids["kid@example.com"]
    assert (card.amount, card.balance, card.redeemed_at) == (
        Decimal("50.00"),
        Decimal("35.50"),
        NOW + timedelta(days=14),
    )
