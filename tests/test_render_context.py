"""Template context from store rows and from sample.yaml: same names, same types."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from render_support import settings_for, write
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.render import CONTEXT_NAMES, build_context, load_sample, sample_context
from engine.store.models import Contact, Coupon, GiftCard, ShopEvent, ShopOrder


def test_context_from_store_rows_reads_like_the_design_says(sqlite_engine: Engine, tmp_path: Path) -> None:
    placed = datetime(2026, 12, 2, 16, 24, tzinfo=UTC)
    with Session(sqlite_engine) as session:
        contact = Contact.model_validate(
            {
                "email": "Maria@Example.com",
                "first_name": "Maria",
                "locale": "ro-RO",
                "country": "ro",
                "timezone": "Europe/Bucharest",
                "tags": ["vip"],
                "attributes": {"items": 3},
            }
        )
        session.add(contact)
        session.commit()
        assert contact.id is not None
        order = ShopOrder(
            external_id="NB-1",
            contact_id=contact.id,
            placed_at=placed,
            total=Decimal("89.00"),
            currency="RON",
            items=[{"name": "Scarf"}],
        )
        card = GiftCard(
            external_id="GC-1",
            recipient_contact_id=contact.id,
            amount=Decimal("50"),
            balance=Decimal("20"),
            issued_at=placed,
        )
        coupon = Coupon(
            code="SORRY-1",
            campaign_id="c",
            coupon_id="apology",
            contact_id=contact.id,
            percent=Decimal("15"),
            expires_at=placed,
            created_at=placed,
        )
        event = ShopEvent(
            external_id="e1",
            type="gift_card.redeemed",
            contact_id=contact.id,
            occurred_at=placed,
            payload={"gift_card_id": "GC-1"},
        )
        session.add_all([order, card, coupon, event])
        session.commit()
        stored = session.exec(select(Contact)).one()
        ctx = build_context(
            settings_for(tmp_path),
            contact=stored,
            now=placed,
            campaign={"id": "c", "name": "C"},
            order=order,
            gift_card=card,
            coupon=coupon,
            event=event,
        )
    assert set(CONTEXT_NAMES) <= set(ctx)
    assert (ctx["contact"].email, ctx["contact"].country, ctx["contact"].tags) == (
        "maria@example.com",
        "RO",
        ["vip"],
    )
    assert ctx["contact"].attributes["items"] == 3
    assert ctx["order"].items == [ctx["order"].items[0]] and ctx["order"].items[0].name == "Scarf"
    assert ctx["order"].total == Decimal("89.00") and ctx["order"].placed_at.tzinfo is not None
    assert (ctx["gift_card"].balance, ctx["coupon"].code, ctx["coupon"].percent) == (
        Decimal("20"),
        "SORRY-1",
        15,
    )
    assert ctx["event"].data.gift_card_id == "GC-1"
    assert ctx["shop"].postal_address.startswith("Nordlys & Brad")
    assert ctx["cutoff"] is None and ctx["trigger_date"] is None


def test_sample_values_are_coerced_like_real_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sample.yaml",
        """\
        now: 2026-12-11T09:00:00+02:00
        contact: {id: 3, email: kadri@example.com, timezone: Europe/Tallinn, total_spent: 148}
        order: {total: 84.90, placed_at: "2026-12-12 20:41", currency: EUR}
        cutoff: {order_by: 2026-12-18T12:00:00+02:00, deliver_before: 2026-12-24}
        shop: {name: Test Shop}
        """,
    )
    settings = settings_for(tmp_path)
    ctx = sample_context(load_sample(path, settings), settings)
    assert ctx["order"].total == Decimal("84.90")
    assert ctx["contact"].total_spent == Decimal("148")
    assert ctx["order"].placed_at == datetime.fromisoformat(
        "2026-12-12T20:41:00+02:00"
    )  # naive → contact's zone
    assert ctx["cutoff"].deliver_before == date(2026, 12, 24)
    assert ctx["now"].utcoffset() is not None
    assert (
        ctx["shop"].name == "Test Shop" and ctx["shop"].postal_address
    )  # the sample overrides, settings fill in
