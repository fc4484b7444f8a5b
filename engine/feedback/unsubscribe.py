"""Unsubscribing through a signed link: withdraw consent with evidence and suppress, at once.

The effect of one unsubscribe, for each channel it covers:

* every open consent row of the contact for that channel gets ``withdrawn_at`` and
  ``withdrawn_source`` (the evidence: "one-click", "preferences page", which campaign);
* a suppression ``(email, channel, unsubscribe)`` is added, so the next send is stopped
  by the policy gate even if the consent is re-imported from a stale shop export;
* an ``unsubscribe`` delivery event is recorded against the latest message of that
  campaign (or of any campaign) on that channel, so ``tidings stats`` can count it.

Everything is idempotent: a second click changes nothing and records nothing. The
suppression reason ``unsubscribe`` blocks marketing only (see :mod:`engine.store.suppressions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from engine.feedback.consent import withdraw_consent
from engine.store.database import write_transaction
from engine.store.models import Channel, Consent, Contact, Delivery, DeliveryEvent
from engine.store.suppressions import Reason, add_suppression, blocked_reason
from engine.tokens import UnsubscribeClaim

KNOWN_CHANNELS: tuple[str, ...] = tuple(channel.value for channel in Channel)


class UnknownChannel(ValueError):
    """A preference form named a channel the engine does not have."""


@dataclass(frozen=True, slots=True)
class UnsubscribeResult:
    contact_found: bool
    channels: tuple[str, ...]
    consents_withdrawn: int = 0
    suppressions_added: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.consents_withdrawn or self.suppressions_added)


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    channel: str
    subscribed: bool


@dataclass(frozen=True, slots=True)
class PreferenceView:
    """What the preferences page shows: no address in full, only enough to recognise it."""

    contact_found: bool
    locale: str | None
    masked_email: str | None
    channels: list[ChannelStatus] = field(default_factory=list)


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` → ``j•••e@example.com``: recognisable to its owner, useless to a bystander."""
    local, _, domain = email.partition("@")
    shown = local[0] + "•••" + local[-1] if len(local) > 2 else local[:1] + "•••"
    return f"{shown}@{domain}"


def _channels(claim: UnsubscribeClaim, requested: Iterable[str] | None) -> tuple[str, ...]:
    chosen = [claim.channel] if not requested else list(dict.fromkeys(requested))
    for channel in chosen:
        if channel not in KNOWN_CHANNELS:
            raise UnknownChannel(f"unknown channel {channel!r} (expected one of {', '.join(KNOWN_CHANNELS)})")
    return tuple(chosen)


def _record_event(
    conn: Connection,
    contact_id: int,
    email: str,
    claim: UnsubscribeClaim,
    channel: str,
    now: datetime,
    source: str,
) -> None:
    table = Delivery.__table__  # type: ignore[attr-defined]
    query = select(table.c.id).where(table.c.contact_id == contact_id, table.c.channel == channel)
    if claim.campaign_id:
        query = query.where(table.c.campaign_id == claim.campaign_id)
    latest = conn.execute(query.order_by(table.c.sent_at.desc(), table.c.id.desc()).limit(1)).scalar()
    conn.execute(
        insert(DeliveryEvent.__table__),  # type: ignore[attr-defined]
        [
            {
                "delivery_id": latest,
                "contact_id": contact_id,
                "email": email,
                "type": "unsubscribe",
                "occurred_at": now,
                "reason": source,
                "payload": {"channel": channel, "campaign_id": claim.campaign_id, "source": source},
            }
        ],
    )


def apply_unsubscribe(
    engine: Engine,
    claim: UnsubscribeClaim,
    *,
    now: datetime,
    source: str,
    channels: Iterable[str] | None = None,
) -> UnsubscribeResult:
    """Unsubscribe the claim's contact from ``channels`` (default: the token's channel)."""
    chosen = _channels(claim, channels)
    contacts = Contact.__table__  # type: ignore[attr-defined]
    evidence = f"{source}:{claim.campaign_id}" if claim.campaign_id else source
    with write_transaction(engine) as conn:
        email = conn.execute(select(contacts.c.email).where(contacts.c.id == claim.contact_id)).scalar()
        if email is None:
            # Forgotten or deleted: nothing left to unsubscribe, and a forgotten address stays suppressed.
            return UnsubscribeResult(contact_found=False, channels=chosen)
        withdrawn = added = 0
        for channel in chosen:
            closed = withdraw_consent(conn, claim.contact_id, channel, at=now, source=evidence)
            new = add_suppression(
                conn, email, channel=channel, reason=Reason.unsubscribe, now=now, source=evidence
            )
            if closed or new:
                _record_event(conn, claim.contact_id, email, claim, channel, now, evidence)
            withdrawn += closed
            added += int(new)
        return UnsubscribeResult(True, chosen, consents_withdrawn=withdrawn, suppressions_added=added)


def preferences(engine: Engine, claim: UnsubscribeClaim) -> PreferenceView:
    """The contact's locale and, per channel, whether marketing may still reach them."""
    contacts = Contact.__table__  # type: ignore[attr-defined]
    consents = Consent.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.email, contacts.c.locale).where(contacts.c.id == claim.contact_id)
        ).first()
        if row is None:
            return PreferenceView(contact_found=False, locale=None, masked_email=None)
        open_channels = set(
            conn.execute(
                select(consents.c.channel).where(
                    consents.c.contact_id == claim.contact_id, consents.c.withdrawn_at.is_(None)
                )
            ).scalars()
        )
        statuses = []
        for channel in KNOWN_CHANNELS:
            if channel != claim.channel and channel not in open_channels:
                continue  # only offer what the contact has, plus the channel the link came from
            subscribed = channel in open_channels and blocked_reason(conn, row.email, channel) is None
            statuses.append(ChannelStatus(channel, subscribed))
    return PreferenceView(True, row.locale, mask_email(row.email), statuses)
