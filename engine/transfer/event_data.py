"""What the ``data`` of each shop event type holds: one definition for ``POST /events`` and ``import``.

Shops send more than the engine reads, so every schema keeps unknown fields (they are stored
in the event's payload and templates may read them as ``event.data.NAME``) and checks only
what the engine and the shipped templates use.

A gift card bought for someone (``gift_card.purchased``) may name its recipient and when it
is to arrive: ``recipient_email``, ``recipient_name``, ``recipient_locale``, ``recipient_country``,
``send_on`` (a date, in the recipient's own time zone), ``sender_name`` (how the buyer signs the
card), ``message`` and ``redeem_url`` (the shop's page where the recipient opens the card).

The buyer's ``message`` is untrusted text that ends up in someone else's inbox: at most
:data:`MESSAGE_MAX_CHARS` characters (a card's worth: a few sentences, the length shops'
gift-card forms allow; longer notes are refused, never cut, so nothing the buyer wrote is
lost without them knowing), line breaks kept (``\\r\\n`` becomes ``\\n``), other control
characters refused. Templates escape it (``{{ event.data.message|linebreaks }}``).

Addresses and names are checked as everywhere values come in (:mod:`engine.inbound`): one RFC 5322
address per email, stored in ASCII form; ids and names on one line.

Returns, exchanges and claims: ``return.requested`` and ``exchange.requested`` name the
``order_id`` (optionally ``reason`` and a ``label_url`` for the return label);
``exchange.shipped`` names the ``order_id`` (optionally ``carrier``, ``tracking_number``,
``tracking_url``); ``claim.opened`` and ``claim.resolved`` carry a ``claim_id`` and optionally
``order_id`` and ``reason`` (``claim.resolved`` also an optional ``resolution`` code).
Links must be http(s): they are written into emails.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from engine.inbound import email_address, single_line

MESSAGE_MAX_CHARS = 500
NAME_MAX_CHARS = 200
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,2}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_URL = re.compile(r"^https?://[^\s/?#]+\.[^\s/?#]+[^\s]*$", re.IGNORECASE)

Money = Annotated[Decimal, Field(ge=0, lt=Decimal("1e10"), allow_inf_nan=False)]
Text = Annotated[
    str, Field(min_length=1, max_length=255), AfterValidator(lambda v: single_line(v, max_length=255))
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Url = Annotated[str, Field(max_length=2000)]


def check_email(value: str) -> str:
    """One plain address, as stored (see :func:`engine.inbound.email_address`)."""
    return email_address(value)


def check_locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError("expected a locale like en, ro or et-EE")
    return value


def check_country(value: str) -> str:
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ValueError("expected an ISO 3166 two-letter country code")
    return value.upper()


def _link(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not _URL.match(value):
        raise ValueError("expected an http(s) link")
    return value


class EventData(BaseModel):
    """Base of every type's data: unknown fields are kept (stored with the event)."""

    model_config = ConfigDict(extra="allow")


class OrderPlaced(EventData):
    order_id: Text
    total: Money
    currency: Currency
    placed_at: AwareDatetime | None = None
    shipping_country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    shipping_method: Text | None = None
    is_gift: bool = False
    items: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)


class OrderUpdate(EventData):
    order_id: Text
    problem: Annotated[str, Field(max_length=1000)] | None = None


class ReturnRequest(EventData):
    """``return.requested`` and ``exchange.requested``."""

    order_id: Text
    reason: Text | None = None
    label_url: Url | None = None

    @field_validator("label_url")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return _link(value)


class ExchangeShipped(EventData):
    order_id: Text
    carrier: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Url | None = None

    @field_validator("tracking_url")
    @classmethod
    def _tracking(cls, value: str | None) -> str | None:
        return _link(value)


class ClaimOpened(EventData):
    claim_id: Text
    order_id: Text | None = None
    reason: Text | None = None


class ClaimResolved(ClaimOpened):
    resolution: Text | None = None


class GiftCardPurchased(EventData):
    gift_card_id: Text
    amount: Money
    currency: Currency
    code_last4: Annotated[str, Field(max_length=8)] | None = None
    is_digital: bool = True
    recipient_email: str | None = None
    recipient_name: Annotated[str, Field(min_length=1, max_length=NAME_MAX_CHARS)] | None = None
    recipient_locale: str | None = None
    recipient_country: str | None = None
    send_on: date | None = None
    sender_name: Annotated[str, Field(min_length=1, max_length=NAME_MAX_CHARS)] | None = None
    message: str | None = None
    redeem_url: Url | None = None

    @field_validator("recipient_email")
    @classmethod
    def _recipient(cls, value: str | None) -> str | None:
        return None if value is None else check_email(value)

    @field_validator("recipient_locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return None if value is None else check_locale(value)

    @field_validator("recipient_country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)

    @field_validator("recipient_name", "sender_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _CONTROL.search(value) or "\n" in value or "\t" in value:
            raise ValueError("a name is one line without control characters")
        return " ".join(value.split()) or None

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
        if _CONTROL.search(text):
            raise ValueError("the message may hold line breaks but no other control characters")
        if len(text) > MESSAGE_MAX_CHARS:
            raise ValueError(f"the message is {len(text)} characters; at most {MESSAGE_MAX_CHARS}")
        return text or None

    @field_validator("redeem_url")
    @classmethod
    def _redeem(cls, value: str | None) -> str | None:
        return _link(value)


class GiftCardRedeemed(EventData):
    gift_card_id: Text
    amount: Money
    balance: Money
    currency: Currency
    code_last4: Annotated[str, Field(max_length=8)] | None = None


DATA_SCHEMAS: dict[str, type[EventData]] = {
    "order.placed": OrderPlaced,
    "order.shipped": OrderUpdate,
    "order.delivered": OrderUpdate,
    "order.problem": OrderUpdate,
    "return.requested": ReturnRequest,
    "exchange.requested": ReturnRequest,
    "exchange.shipped": ExchangeShipped,
    "claim.opened": ClaimOpened,
    "claim.resolved": ClaimResolved,
    "gift_card.purchased": GiftCardPurchased,
    "gift_card.redeemed": GiftCardRedeemed,
}
