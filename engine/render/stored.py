"""The stored rows a message to one real contact is rendered with, for previews of real data.

``tidings render --contact``, the preview's contact picker and ``tidings plan``'s sample rows
all show a message "as this contact would get it": the contact, their latest order and their
latest received gift card with a balance (DESIGN.md "Template context"). One definition here,
so the three never disagree about which order or card a template sees.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from engine.store.models import Contact, GiftCard, ShopOrder


def find_contact(session: Session, ref: str | int) -> Contact | None:
    """A contact by id (digits) or by email address (case-insensitive, as stored)."""
    text = str(ref).strip()
    if text.isdigit():
        return session.get(Contact, int(text))
    return session.exec(select(Contact).where(Contact.email == text.lower())).first()


def latest_order_and_card(session: Session, contact_id: int) -> tuple[ShopOrder | None, GiftCard | None]:
    """The contact's latest order and latest received card that still has a balance."""
    order = session.exec(
        select(ShopOrder).where(ShopOrder.contact_id == contact_id).order_by(col(ShopOrder.placed_at).desc())
    ).first()
    card = session.exec(
        select(GiftCard)
        .where(GiftCard.recipient_contact_id == contact_id, col(GiftCard.balance) > 0)
        .order_by(col(GiftCard.issued_at).desc())
    ).first()
    return order, card
