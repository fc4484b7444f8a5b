"""Which order and gift card a message or expression about a contact refers to.

DESIGN.md "Template context": ``order`` is the order of an ``order.*`` event, else the
contact's latest order; ``gift_card`` is the card of a ``gift_card.*`` event, else the
contact's latest received card with a balance. One definition, used by the planner (event
triggers' ``where``) and the flow stepper (``if`` steps), so an expression means the same in both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from engine.store.models import GiftCard, ShopOrder

ORDER = ShopOrder.__table__  # type: ignore[attr-defined]
CARD = GiftCard.__table__  # type: ignore[attr-defined]


def related_order_and_card(
    conn: Connection, contact_id: int, event: Any | None
) -> tuple[Row[Any] | None, Row[Any] | None]:
    """The (order, gift card) rows for ``contact_id``, preferring those named in ``event``'s payload."""
    order = conn.execute(
        select(ORDER).where(ORDER.c.contact_id == contact_id).order_by(ORDER.c.placed_at.desc()).limit(1)
    ).first()
    card = conn.execute(
        select(CARD)
        .where(CARD.c.recipient_contact_id == contact_id, CARD.c.balance > 0)
        .order_by(CARD.c.issued_at.desc())
        .limit(1)
    ).first()
    payload = dict(getattr(event, "payload", None) or {})
    if payload.get("order_id"):
        named = conn.execute(select(ORDER).where(ORDER.c.external_id == str(payload["order_id"]))).first()
        order = named or order
    if payload.get("gift_card_id"):
        named = conn.execute(select(CARD).where(CARD.c.external_id == str(payload["gift_card_id"]))).first()
        card = named or card
    return order, card
