"""Audience filters compiled to SQL, filter by filter, on SQLite and PostgreSQL.

Four hand-made contacts, chosen so that each filter's expected ids are obvious:

1 ana EE Tallinn   et vip           points 120, tier gold, newsletter, born 1990  3 orders, consent
2 bob RO Bucharest ro —             points "120" (a string!), tier silver        problem order, withdrew
3 cy  US New York  en vip wholesale points 5, newsletter false                  gift card 25, unsubscribed
4 dan EE —         —  —             —                                           gift card 0, forgotten
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from engine.audience import AudienceContext, audience_filters, contact_ids
from engine.store.models import Consent, Contact, DeliveryEvent, GiftCard, ShopEvent, ShopOrder, Suppression
from engine.store.suppressions import email_digest
from engine.workspace.filters import Filter

REFERENCE = datetime(2026, 12, 28, 12, 0, tzinfo=UTC)
CTX = AudienceContext(reference=REFERENCE, zone=ZoneInfo("Europe/Bucharest"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def shop(store_engine: Engine) -> Engine:
    return seed(store_engine)


def seed(store_engine: Engine) -> Engine:
    contacts: list[dict[str, Any]] = [
        dict(
            id=1,
            email="ana@example.ee",
            country="EE",
            timezone="Europe/Tallinn",
            locale="et",
            tags=["vip"],
            attributes={"points": 120, "tier": "gold", "newsletter": True, "birthday": "1990-05-03"},
            orders_count=3,
            total_spent=Decimal("300.00"),
            last_order_at=at("2026-11-20T09:00"),
        ),
        dict(
            id=2,
            email="bob@example.ro",
            country="RO",
            timezone="Europe/Bucharest",
            locale="ro",
            tags=[],
            attributes={"points": "120", "tier": "silver"},
            orders_count=1,
            total_spent=Decimal("40.00"),
            last_order_at=at("2026-12-02T10:00"),
        ),
        dict(
            id=3,
            email="cy@example.com",
            country="US",
            timezone="America/New_York",
            locale="en",
            tags=["vip", "wholesale"],
            attributes={"points": 5, "newsletter": False},
            orders_count=0,
            total_spent=Decimal("0.00"),
            last_order_at=None,
        ),
        dict(
            id=4,
            email="dan@example.ee",
            country="EE",
            timezone=None,
            locale=None,
            tags=[],
            attributes={},
            orders_count=0,
            total_spent=Decimal("0.00"),
            last_order_at=None,
        ),
    ]
    granted = at("2026-10-01T00:00")
    with store_engine.begin() as conn:
        conn.execute(insert(Contact.__table__), contacts)  # type: ignore[attr-defined]
        conn.execute(
            insert(Consent.__table__),  # type: ignore[attr-defined]
            [
                dict(contact_id=1, channel="email", granted_at=granted, withdrawn_at=None),
                dict(contact_id=2, channel="email", granted_at=granted, withdrawn_at=at("2026-11-01T00:00")),
                dict(contact_id=3, channel="email", granted_at=granted, withdrawn_at=None),
                dict(contact_id=4, channel="email", granted_at=granted, withdrawn_at=None),
            ],
        )
        conn.execute(
            insert(Suppression.__table__),  # type: ignore[attr-defined]
            [
                dict(email="cy@example.com", channel="email", reason="unsubscribe", created_at=granted),
                dict(
                    email=email_digest("dan@example.ee"),
                    channel="all",
                    reason="forgotten",
                    created_at=granted,
                ),
            ],
        )
        conn.execute(
            insert(ShopOrder.__table__),  # type: ignore[attr-defined]
            [
                dict(
                    external_id="o1",
                    total=Decimal("10.00"),
                    contact_id=1,
                    status="delivered",
                    placed_at=at("2026-11-05T10:00"),
                    shipping_method="standard",
                    is_gift=False,
                    items=[],
                ),
                dict(
                    external_id="o2",
                    total=Decimal("10.00"),
                    contact_id=1,
                    status="shipped",
                    placed_at=at("2026-11-20T09:00"),
                    shipping_method="express",
                    is_gift=True,
                    items=[],
                ),
                dict(
                    external_id="o3",
                    total=Decimal("10.00"),
                    contact_id=1,
                    status="delivered",
                    placed_at=at("2025-06-01T09:00"),
                    shipping_method="standard",
                    is_gift=False,
                    items=[],
                ),
                dict(
                    external_id="o4",
                    total=Decimal("10.00"),
                    contact_id=2,
                    status="problem",
                    placed_at=at("2026-12-02T10:00"),
                    shipping_method="standard",
                    is_gift=False,
                    items=[],
                ),
            ],
        )
        conn.execute(
            insert(GiftCard.__table__),  # type: ignore[attr-defined]
            [
                dict(
                    external_id="g1",
                    recipient_contact_id=3,
                    amount=Decimal("50"),
                    balance=Decimal("25"),
                    issued_at=at("2026-12-20T10:00"),
                ),
                dict(
                    external_id="g2",
                    recipient_contact_id=4,
                    amount=Decimal("20"),
                    balance=Decimal("0"),
                    issued_at=at("2026-12-22T10:00"),
                ),
            ],
        )
        conn.execute(
            insert(ShopEvent.__table__),  # type: ignore[attr-defined]
            [
                dict(
                    external_id="e1",
                    type="site.first_visit",
                    contact_id=3,
                    occurred_at=at("2026-12-21T10:00"),
                    payload={},
                ),
                dict(
                    external_id="e2",
                    type="order.placed",
                    contact_id=1,
                    occurred_at=at("2026-11-20T09:00"),
                    payload={},
                ),
            ],
        )
        # Feedback: 3 clicked recently, 4 was only fetched by Apple's prefetch, 2 opened a month ago.
        conn.execute(
            insert(DeliveryEvent.__table__),  # type: ignore[attr-defined]
            [
                dict(
                    provider_event_id="f1",
                    contact_id=3,
                    type="click",
                    occurred_at=at("2026-12-20T10:00"),
                    payload={},
                ),
                dict(
                    provider_event_id="f2",
                    contact_id=4,
                    type="machine_open",
                    occurred_at=at("2026-12-20T10:00"),
                    payload={},
                ),
                dict(
                    provider_event_id="f3",
                    contact_id=2,
                    type="open",
                    occurred_at=at("2026-11-25T10:00"),
                    payload={},
                ),
            ],
        )
    return store_engine


FILTERS = TypeAdapter(list[Filter])


def ids(engine: Engine, filters: list[dict[str, Any]]) -> list[int]:
    """The contacts a ``where`` list (as a marketer writes it) selects, through the workspace's models."""
    with engine.connect() as conn:
        return list(contact_ids(conn, FILTERS.validate_python(filters), CTX))


CASES: list[tuple[str, list[dict[str, Any]], list[int]]] = [
    ("no filter matches everyone", [], [1, 2, 3, 4]),
    ("consent needs an open grant and no suppression", [{"consent": "email"}], [1]),
    ("tag membership", [{"tag": "vip"}], [1, 3]),
    ("number attribute ignores numeric strings", [{"attributes.points": {"gt": 100}}], [1]),
    ("string attribute equality is type-correct", [{"attributes.points": "120"}], [2]),
    ("boolean attribute", [{"attributes.newsletter": True}], [1]),
    ("attribute in a list", [{"attributes.tier": {"in": ["gold", "silver"]}}], [1, 2]),
    ("attribute date before", [{"attributes.birthday": {"before": "2000-01-01"}}], [1]),
    ("attribute missing", [{"attributes.tier": {"exists": False}}], [3, 4]),
    ("country column, case-insensitive value", [{"country": "ee"}], [1, 4]),
    ("numeric column comparison", [{"orders_count": {"gte": 1}}], [1, 2]),
    ("column missing", [{"locale": {"exists": False}}], [4]),
    ("time column within a duration", [{"last_order_at": {"within": "30d"}}], [2]),
    (
        "time column within a date range, days inclusive",
        [{"last_order_at": {"within": ["2026-11-20", "2026-11-20"]}}],
        [1],
    ),
    ("time column after a date", [{"last_order_at": {"after": "2026-11-30"}}], [2]),
    ("orders in a date range", [{"order": {"placed_within": ["2026-11-01", "2026-12-31"]}}], [1, 2]),
    ("order status", [{"order": {"status": "problem"}}], [2]),
    ("gift orders", [{"order": {"is_gift": True}}], [1]),
    ("order count", [{"order": {"count_gte": 2}}], [1]),
    ("order method within a duration", [{"order": {"method": "express", "placed_within": "60d"}}], [1]),
    ("order method outside the duration", [{"order": {"method": "express", "placed_within": "30d"}}], []),
    ("gift card received", [{"gift_card": {"received": True}}], [3, 4]),
    ("gift card with a balance", [{"gift_card": {"balance_gt": 0}}], [3]),
    ("no gift card", [{"gift_card": {"received": False}}], [1, 2]),
    ("recent event", [{"event": {"type": "site.first_visit", "within": "14d"}}], [3]),
    ("old event outside the duration", [{"event": {"type": "order.placed", "within": "14d"}}], []),
    ("clicked recently", [{"clicked": {"within": "30d"}}], [3]),
    ("a machine open is not an open", [{"opened": {"within": "30d"}}], []),
    ("a person's open within the window", [{"opened": {"within": "60d"}}], [2]),
    ("engaged: clicked or ordered", [{"engaged": {"within": "60d"}}], [1, 2, 3]),
    ("sunset: unengaged non-buyers stay out", [{"not": [{"engaged": {"within": "10d"}}]}], [1, 2, 4]),
    ("any is an OR", [{"any": [{"tag": "vip"}, {"country": "RO"}]}], [1, 2, 3]),
    ("not is NOT OR", [{"not": [{"tag": "vip"}, {"country": "RO"}]}], [4]),
    ("items are ANDed", [{"tag": "vip"}, {"country": "US"}], [3]),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [(f, e) for _, f, e in CASES], ids=[name for name, _, _ in CASES]
)
def test_filter_selects_the_expected_contacts(
    shop: Engine, filters: list[dict[str, Any]], expected: list[int]
) -> None:
    assert ids(shop, filters) == expected


def test_segment_and_campaign_where_are_anded(shop: Engine) -> None:
    segment = FILTERS.validate_python([{"order": {"placed_within": ["2026-11-01", "2026-12-31"]}}])
    combined = audience_filters(segment, FILTERS.validate_python([{"consent": "email"}]))
    with shop.connect() as conn:
        assert list(contact_ids(conn, combined, CTX)) == [1]


def test_the_eu_soft_opt_in_reaches_customers_who_never_opted_out(store_engine: Engine) -> None:
    """``consent: {email: existing_customer}``: express consent, or a previous purchase with no
    withdrawn consent; an unsubscribed address is out either way."""
    rows = [
        dict(id=11, email="bought@example.ee", orders_count=1),  # a customer, never asked: in
        dict(id=12, email="withdrew@example.ee", orders_count=2),  # a customer who opted out: out
        dict(id=13, email="browser@example.ee", orders_count=0),  # no purchase, no consent: out
        dict(id=14, email="asked@example.ee", orders_count=0),  # express consent: in
        dict(id=15, email="unsubscribed@example.ee", orders_count=1),  # unsubscribed: out
    ]
    defaults = {"tags": [], "attributes": {}, "total_spent": Decimal("0.00")}
    granted = at("2026-10-01T00:00")
    with store_engine.begin() as conn:
        conn.execute(insert(Contact.__table__), [{**defaults, **row} for row in rows])  # type: ignore[attr-defined]
        conn.execute(
            insert(Consent.__table__),  # type: ignore[attr-defined]
            [
                dict(contact_id=12, channel="email", granted_at=granted, withdrawn_at=at("2026-11-01T00:00")),
                dict(contact_id=14, channel="email", granted_at=granted, withdrawn_at=None),
            ],
        )
        conn.execute(
            insert(ShopOrder.__table__),  # type: ignore[attr-defined]
            [
                dict(
                    external_id=f"s{cid}",
                    contact_id=cid,
                    total=Decimal("10"),
                    status="delivered",
                    placed_at=at("2026-11-05T10:00"),
                    is_gift=False,
                    items=[],
                )
                for cid in (11, 12, 15)
            ],
        )
        conn.execute(
            insert(Suppression.__table__),  # type: ignore[attr-defined]
            [
                dict(
                    email="unsubscribed@example.ee", channel="email", reason="unsubscribe", created_at=granted
                )
            ],
        )
    assert ids(store_engine, [{"consent": {"email": "existing_customer"}}]) == [11, 14]
    assert ids(store_engine, [{"consent": "email"}]) == [14]
