"""What a message sees: the one definition of a template's context for a real contact.

Plan, ``render --contact``, the preview's contact picker, flow ``if`` conditions, event trigger
``where`` filters, ``simulate`` and the dispatcher all build the context here, from two things:

* the message's :class:`~engine.runtime.facts.MessageFacts` — what the planner (or the flow
  stepper) decided: cutoff, trigger date, occurrence moment, zone, event, coupon;
* the contact's stored data, read in bulk by :class:`StoredData`: the contact, their latest order,
  their latest received gift card with a balance, and the event's own order and card (or the
  order the facts name: an agent's apology about one order).

DESIGN.md "Template context": ``order`` is the order the facts name, else that of an ``order.*``
event, else the contact's latest order; ``gift_card`` is the card of a ``gift_card.*`` event, else
the contact's latest received card with a balance. Nothing else in the engine assembles a context
for a real contact (a template's ``sample.yaml`` goes through
:func:`engine.render.context.sample_context`).

:class:`StoredData` reads Core rows, not ORM objects: a Core row has the model's attributes under
the same names and types (aware datetimes, decoded JSON, ``Decimal``), and building a thousand ORM
instances per batch was ~15 % of the dispatcher's CPU per message. One batch costs five queries
whatever its size (chunked under SQLite's bound-parameter limit).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Row

from engine.render.context import build_context, contact_record
from engine.runtime.facts import MessageFacts
from engine.runtime.zones import resolve_zone
from engine.settings import Settings
from engine.store.models import Contact, GiftCard, ShopEvent, ShopOrder
from engine.workspace.models import Campaign

CONTACT: Table = Contact.__table__  # type: ignore[attr-defined]
ORDER: Table = ShopOrder.__table__  # type: ignore[attr-defined]
CARD: Table = GiftCard.__table__  # type: ignore[attr-defined]
EVENT: Table = ShopEvent.__table__  # type: ignore[attr-defined]
#: SQLite caps bound parameters per statement; 900 stays under every version's limit.
CHUNK = 900

#: A Core row of a store table; it reads like the model (``row.email``, ``row.placed_at``).
StoreRow = Row[Any]


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])


@dataclass(slots=True)
class StoredData:
    """The store rows the messages of one batch (or one contact) are rendered from."""

    contacts: dict[int, StoreRow] = field(default_factory=dict)
    latest_order: dict[int, StoreRow] = field(default_factory=dict)
    gift_card: dict[int, StoreRow] = field(default_factory=dict)
    events: dict[int, StoreRow] = field(default_factory=dict)
    orders_by_external: dict[str, StoreRow] = field(default_factory=dict)
    cards_by_external: dict[str, StoreRow] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        conn: Connection,
        contact_ids: Iterable[int],
        event_ids: Iterable[int] = (),
        order_ids: Iterable[str] = (),
    ) -> StoredData:
        """The rows for these contacts and events; ``order_ids`` are orders the facts name."""
        data = cls()
        contacts = sorted({int(c) for c in contact_ids})
        for chunk in _chunks(contacts):
            data.contacts.update(
                (row.id, row) for row in conn.execute(select(CONTACT).where(CONTACT.c.id.in_(chunk)))
            )
            orders = (
                select(ORDER).where(ORDER.c.contact_id.in_(chunk)).order_by(ORDER.c.placed_at, ORDER.c.id)
            )
            for row in conn.execute(orders):
                data.latest_order[row.contact_id] = row  # ordered by time: the last one wins
            cards = (
                select(CARD)
                .where(CARD.c.recipient_contact_id.in_(chunk), CARD.c.balance > 0)
                .order_by(CARD.c.issued_at, CARD.c.id)
            )
            for row in conn.execute(cards):
                data.gift_card[row.recipient_contact_id] = row
        for chunk in _chunks(sorted({int(e) for e in event_ids if e})):
            data.events.update(
                (row.id, row) for row in conn.execute(select(EVENT).where(EVENT.c.id.in_(chunk)))
            )
        wanted_orders = sorted(
            {str(e.payload["order_id"]) for e in data.events.values() if (e.payload or {}).get("order_id")}
            | {str(order_id) for order_id in order_ids if order_id}
        )
        card_ids = sorted(
            {
                str(e.payload["gift_card_id"])
                for e in data.events.values()
                if (e.payload or {}).get("gift_card_id")
            }
        )
        for chunk in _chunks(wanted_orders):
            data.orders_by_external.update(
                (row.external_id, row)
                for row in conn.execute(select(ORDER).where(ORDER.c.external_id.in_(chunk)))
            )
        for chunk in _chunks(card_ids):
            data.cards_by_external.update(
                (row.external_id, row)
                for row in conn.execute(select(CARD).where(CARD.c.external_id.in_(chunk)))
            )
        return data

    def related(
        self, contact_id: int, event: StoreRow | None, order_id: str | None = None
    ) -> tuple[StoreRow | None, StoreRow | None]:
        """The (order, gift card) a message about this contact refers to (DESIGN "Template context")."""
        order = self.latest_order.get(contact_id)
        card = self.gift_card.get(contact_id)
        payload = dict(event.payload or {}) if event is not None else {}
        if order_id:
            order = self.orders_by_external.get(order_id, order)
        elif payload.get("order_id"):
            order = self.orders_by_external.get(str(payload["order_id"]), order)
        if payload.get("gift_card_id"):
            card = self.cards_by_external.get(str(payload["gift_card_id"]), card)
        return order, card


def message_zone(facts: MessageFacts, contact: StoreRow | None, settings: Settings) -> tuple[str, str]:
    """The zone name a message uses and where it came from: the planner's decision, else the rule."""
    if facts.zone is not None:
        return facts.zone, facts.zone_source or "contact"
    resolved = resolve_zone(
        getattr(contact, "timezone", None),
        getattr(contact, "country", None),
        cutoff_zone=facts.cutoff.zone if facts.cutoff is not None else None,
        default=settings.zone,
    )
    return resolved.name, resolved.source


def message_context(
    settings: Settings,
    campaign: Campaign | None,
    facts: MessageFacts,
    data: StoredData,
    *,
    contact_id: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The template context of one message: every name DESIGN lists, ``None`` where absent.

    ``campaign`` is None only for a template no campaign sends, previewed with a real contact.
    """
    contact = data.contacts.get(contact_id) if contact_id is not None else None
    event = data.events.get(facts.event_id) if facts.event_id is not None else None
    order, card = data.related(contact_id, event, facts.order_id) if contact_id is not None else (None, None)
    contact_fields = None
    if contact is not None:
        zone, source = message_zone(facts, contact, settings)
        contact_fields = contact_record(contact, zone=zone, zone_source=source)
    return build_context(
        settings,
        contact=contact_fields,
        now=now,
        campaign={"id": campaign.key, "name": campaign.name} if campaign is not None else None,
        occurrence=facts.occurrence_at or now,
        order=order,
        gift_card=card,
        cutoff=facts.cutoff.as_context() if facts.cutoff is not None else None,
        coupon=facts.coupon.as_context() if facts.coupon is not None else None,
        event=event,
        trigger_date=facts.trigger_date,
    )


__all__ = ["StoreRow", "StoredData", "message_context", "message_zone"]
