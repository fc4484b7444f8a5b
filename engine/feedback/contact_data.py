"""Data-subject rights: export everything held about a contact, or forget them.

``export`` gathers every row that concerns the address (GDPR art. 15/20): the contact,
consents, orders, gift cards (bought or received), shop events, deliveries with their
events, coupons, topics left, a pause, and suppressions, as one JSON-ready dict.

``forget`` (art. 17) erases personal data in one transaction and keeps exactly one thing:
a suppression ``(sha256:<digest>, all, forgotten)``, so the address can never be mailed
again by an import that still carries it, while the address itself is gone. What happens
to each table:

* ``contact`` — deleted; ``consent``, ``shop_order``, ``shop_event``, ``coupon``,
  ``enrolment``, ``topic_opt_out`` and ``snooze`` rows go with it (the store's ``ON DELETE CASCADE``);
* ``gift_card`` — kept for the shop's accounting, the link to the person cleared;
* ``delivery`` — kept (campaign statistics stay true) with its contact, per-message
  context and error text cleared;
* ``delivery_event`` — deleted when about the contact or the address;
* ``suppression`` — plain rows for the address replaced by the hashed ``forgotten`` row;
* ``shop_event`` payloads of *other* contacts that mention the address (a gift card
  bought for this person) have that address blanked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, cast, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import Text

from engine.store.database import write_transaction
from engine.store.models import (
    Consent,
    Contact,
    Coupon,
    Delivery,
    DeliveryEvent,
    Enrolment,
    GiftCard,
    ShopEvent,
    ShopOrder,
    Snooze,
    Suppression,
    TopicOptOut,
)
from engine.store.suppressions import ALL_CHANNELS, Reason, add_suppression, email_digest, normalise_email

REDACTED = "[forgotten]"


def _t(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(conn: Connection, statement: Any) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in row._mapping.items()} for row in conn.execute(statement)]


def export_contact(engine: Engine, email: str) -> dict[str, Any] | None:
    """Everything held about ``email``, or None when no contact and no suppression has it."""
    address = normalise_email(email)
    contacts, suppressions = _t(Contact), _t(Suppression)
    with engine.connect() as conn:
        found = _rows(conn, select(contacts).where(contacts.c.email == address))
        suppressed = _rows(
            conn,
            select(suppressions).where(suppressions.c.email.in_([address, email_digest(address)])),
        )
        events_by_address = _rows(conn, select(_t(DeliveryEvent)).where(_t(DeliveryEvent).c.email == address))
        if not found:
            if not suppressed and not events_by_address:
                return None
            return {
                "email": address,
                "contact": None,
                "suppressions": suppressed,
                "delivery_events": events_by_address,
            }
        contact = found[0]
        cid = contact["id"]
        cards = _t(GiftCard)
        deliveries = _t(Delivery)
        delivery_events = _t(DeliveryEvent)
        return {
            "email": address,
            "contact": contact,
            "consents": _rows(conn, select(_t(Consent)).where(_t(Consent).c.contact_id == cid)),
            "orders": _rows(conn, select(_t(ShopOrder)).where(_t(ShopOrder).c.contact_id == cid)),
            "gift_cards": _rows(
                conn,
                select(cards).where(
                    or_(cards.c.purchaser_contact_id == cid, cards.c.recipient_contact_id == cid)
                ),
            ),
            "events": _rows(conn, select(_t(ShopEvent)).where(_t(ShopEvent).c.contact_id == cid)),
            "enrolments": _rows(conn, select(_t(Enrolment)).where(_t(Enrolment).c.contact_id == cid)),
            "deliveries": _rows(conn, select(deliveries).where(deliveries.c.contact_id == cid)),
            "delivery_events": _rows(
                conn,
                select(delivery_events).where(
                    or_(delivery_events.c.contact_id == cid, delivery_events.c.email == address)
                ),
            ),
            "coupons": _rows(conn, select(_t(Coupon)).where(_t(Coupon).c.contact_id == cid)),
            "topics_left": _rows(conn, select(_t(TopicOptOut)).where(_t(TopicOptOut).c.contact_id == cid)),
            "pause": _rows(conn, select(_t(Snooze)).where(_t(Snooze).c.contact_id == cid)),
            "suppressions": suppressed,
        }


@dataclass(frozen=True, slots=True)
class ForgetReport:
    contact_found: bool
    deliveries_anonymised: int
    delivery_events_deleted: int
    foreign_events_scrubbed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact_found": self.contact_found,
            "deliveries_anonymised": self.deliveries_anonymised,
            "delivery_events_deleted": self.delivery_events_deleted,
            "foreign_events_scrubbed": self.foreign_events_scrubbed,
        }


def _scrub(value: Any, needles: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        lowered = value.lower()
        return REDACTED if any(needle in lowered for needle in needles) else value
    if isinstance(value, dict):
        return {key: _scrub(inner, needles) for key, inner in value.items()}
    if isinstance(value, list):
        return [_scrub(inner, needles) for inner in value]
    return value


def forget_contact(engine: Engine, email: str, *, now: datetime) -> ForgetReport:
    """Erase ``email``'s personal data and keep it suppressed by digest; safe to run again."""
    address = normalise_email(email)
    contacts, deliveries, delivery_events = _t(Contact), _t(Delivery), _t(DeliveryEvent)
    events, cards, suppressions = _t(ShopEvent), _t(GiftCard), _t(Suppression)
    with write_transaction(engine) as conn:
        cid = conn.execute(select(contacts.c.id).where(contacts.c.email == address)).scalar()
        anonymised = deleted = 0
        if cid is not None:
            anonymised = conn.execute(
                update(deliveries)
                .where(deliveries.c.contact_id == cid)
                .values(contact_id=None, context={}, last_error=None, updated_at=now)
            ).rowcount
            conn.execute(
                update(cards).where(cards.c.purchaser_contact_id == cid).values(purchaser_contact_id=None)
            )
            conn.execute(
                update(cards).where(cards.c.recipient_contact_id == cid).values(recipient_contact_id=None)
            )
        condition = delivery_events.c.email == address
        if cid is not None:
            condition = or_(condition, delivery_events.c.contact_id == cid)
        deleted = conn.execute(delete(delivery_events).where(condition)).rowcount
        if cid is not None:
            conn.execute(delete(contacts).where(contacts.c.id == cid))
        # Other people's events that name this address (e.g. a gift card bought for them).
        scrubbed = 0
        mentions = conn.execute(
            select(events.c.id, events.c.payload).where(cast(events.c.payload, Text).like(f"%{address}%"))
        ).all()
        for row in mentions:
            conn.execute(
                update(events).where(events.c.id == row.id).values(payload=_scrub(row.payload, (address,)))
            )
            scrubbed += 1
        conn.execute(delete(suppressions).where(suppressions.c.email == address))
        add_suppression(
            conn,
            address,
            channel=ALL_CHANNELS,
            reason=Reason.forgotten,
            now=now,
            source="contact forget",
            hashed=True,
        )
    return ForgetReport(cid is not None, int(anonymised or 0), int(deleted or 0), scrubbed)
