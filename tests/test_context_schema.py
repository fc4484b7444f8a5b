"""The one definition of a message's context agrees with the store and with the records a send builds."""

from __future__ import annotations

import types
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Union, get_args, get_origin

import pytest

from engine.render.context import (
    contact_record,
    coupon_record,
    cutoff_record,
    event_record,
    gift_card_record,
    order_record,
)
from engine.runtime.facts import CouponFact
from engine.settings import Settings
from engine.store.models import Contact, Coupon, GiftCard, ShopEvent, ShopOrder
from engine.workspace import context_schema as schema
from engine.workspace.schedules import Cutoff

# The store column each record field is read from, where the names differ.
COLUMNS = {
    ("order", "id"): "external_id",
    ("order", "number"): "external_id",
    ("gift_card", "id"): "external_id",
}
KIND_OF_TYPE = {
    int: schema.Kind.integer,
    str: schema.Kind.text,
    Decimal: schema.Kind.money,
    bool: schema.Kind.boolean,
    datetime: schema.Kind.moment,
    date: schema.Kind.day,
}


def _plain(annotation: Any) -> Any:
    """``datetime | None`` → ``datetime``; ``list[str]`` → ``list``."""
    if get_origin(annotation) in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _plain(inner)
    return get_origin(annotation) or annotation


@pytest.mark.parametrize(
    ("record", "model"),
    [("contact", Contact), ("order", ShopOrder), ("gift_card", GiftCard), ("coupon", Coupon)],
)
def test_every_stored_field_has_the_kind_of_its_store_column(record: str, model: type[Any]) -> None:
    spec = schema.RECORDS[record]
    for field in spec.fields:
        column = COLUMNS.get((record, field.name), field.name)
        if column not in model.model_fields:
            continue  # computed for templates (contact.name, coupon.placeholder …)
        python = _plain(model.model_fields[column].annotation)
        expected = {list: (schema.Kind.texts, schema.Kind.items), dict: (schema.Kind.data,)}.get(python)
        assert field.kind in (expected or (KIND_OF_TYPE[python],)), f"{record}.{field.name}"


def test_the_records_a_send_builds_have_exactly_the_defined_fields() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    contact = Contact(id=1, email="a@example.com", tags=["vip"], attributes={"size": "M"})
    order = ShopOrder(external_id="NB-1", contact_id=1, placed_at=now, total=Decimal("10"), items=[])
    card = GiftCard(external_id="GC-1", amount=Decimal("25"), balance=Decimal("5"), issued_at=now)
    coupon = Coupon(code="SORRY-1", percent=Decimal("15"), campaign_id="c", contact_id=1, occurrence="o")
    event = ShopEvent(external_id="e", type="order.placed", occurred_at=now, payload={"order_id": "NB-1"})
    cutoff = Cutoff("EE", "standard", "Omniva", now, now.date())
    built = {
        "contact": contact_record(contact),
        "order": order_record(order),
        "gift_card": gift_card_record(card),
        "coupon": coupon_record(coupon),
        "event": event_record(event),
        "cutoff": cutoff_record(cutoff),
    }
    for name, record in built.items():
        assert tuple(record) == schema.RECORDS[name].names, name
    placeholder = CouponFact("PREVIEW-CODE", Decimal("10"), now, placeholder=True).as_context()
    assert tuple(placeholder) == schema.COUPON.names
    assert tuple(Settings().shop.as_context()) == schema.SHOP.names
    assert tuple(Settings().shop.as_context()["support"]) == schema.SUPPORT.names


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        (schema.Kind.money, 1.15, Decimal("1.15")),
        (schema.Kind.money, 250, Decimal("250")),
        (schema.Kind.integer, "12", 12),
        (schema.Kind.text, 7722, "7722"),
        (schema.Kind.moment, "2026-12-20 15:02", datetime(2026, 12, 20, 15, 2, tzinfo=UTC)),
        (schema.Kind.day, "2026-12-24", date(2026, 12, 24)),
        (schema.Kind.data, {"send_on": date(2026, 12, 24), "n": 1.5}, {"send_on": "2026-12-24", "n": 1.5}),
    ],
)
def test_sample_values_get_the_kind_real_ones_have(kind: schema.Kind, given: Any, expected: Any) -> None:
    value = schema.coerce(kind, given, UTC)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        (schema.Kind.integer, "many"),
        (schema.Kind.money, True),
        (schema.Kind.moment, "soon"),
        (schema.Kind.text, [1]),
    ],
)
def test_a_sample_value_of_the_wrong_kind_is_refused_with_what_was_expected(
    kind: schema.Kind, given: Any
) -> None:
    with pytest.raises(schema.ValueProblem, match="expected"):
        schema.coerce(kind, given, UTC)
