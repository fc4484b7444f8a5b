"""Who a flow's send goes to: the enrolled contact, or the gift card's recipient (``to: recipient``).

A ``gift_card.purchased`` event enrols the *buyer* (the event's contact); the card's recipient
became a contact of their own when the event was stored (:mod:`engine.feedback.shop_events`,
without marketing consent). A ``send: {…, to: recipient}`` step writes its outbox row for that
recipient: the row's contact is the recipient, its facts keep the purchase event (so the message
sees ``event`` = the purchase and ``gift_card`` = its card, read from the store when it is sent)
and the recipient's zone (their own, else their country's, else ``TIDINGS_TIMEZONE``:
:mod:`engine.runtime.zones`), which quiet hours and the templates' dates then use.

The recipient is the card's ``recipient_contact_id``, looked up through the event's
``gift_card_id``: a card whose recipient was forgotten (``contact forget`` clears the link) has
none, and nothing is sent to anybody.

Waits read the same answer: ``until_time`` and ``until_date`` are wall-clock times in the zone of
the contact the next send goes to (:func:`addressee` of :meth:`Campaign.next_send`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from engine.runtime.facts import MessageFacts
from engine.runtime.message_context import StoredData, StoreRow, message_zone
from engine.runtime.zones import resolve_zone
from engine.settings import Settings


@dataclass(frozen=True, slots=True)
class Addressee:
    """A message's contact, the stored rows it renders from and its facts (the addressee's zone)."""

    contact: StoreRow
    data: StoredData
    facts: MessageFacts

    @property
    def contact_id(self) -> int:
        return int(self.contact.id)


def recipient_id(data: StoredData, facts: MessageFacts) -> int | None:
    """The recipient of the card the facts' event is about, or None."""
    event = data.events.get(facts.event_id) if facts.event_id is not None else None
    card_id = (event.payload or {}).get("gift_card_id") if event is not None else None
    card = data.cards_by_external.get(str(card_id)) if card_id else None
    found = card.recipient_contact_id if card is not None else None
    return int(found) if found is not None else None


def addressee(
    conn: Connection,
    to: str,
    contact: StoreRow,
    data: StoredData,
    facts: MessageFacts,
    settings: Settings,
) -> Addressee | None:
    """Who a send with ``to`` (``contact`` or ``recipient``) reaches; None when there is no recipient."""
    if to != "recipient":
        return Addressee(contact, data, facts)
    found = recipient_id(data, facts)
    if found is None:
        return None
    if found == contact.id:
        theirs = data
    else:
        theirs = StoredData.load(conn, [found], [facts.event_id] if facts.event_id is not None else [])
    row = theirs.contacts.get(found)
    if row is None:
        return None
    zone = resolve_zone(row.timezone, row.country, cutoff_zone=None, default=settings.zone)
    return Addressee(row, theirs, facts.with_zone(zone))


def addressee_zone(addressed: Addressee, settings: Settings) -> str:
    """The zone name a message to this addressee is timed in."""
    return message_zone(addressed.facts, addressed.contact, settings)[0]


__all__ = ["Addressee", "addressee", "addressee_zone", "recipient_id"]
