"""SendGrid's signed event webhook: verify, parse, store once, and act on what it says.

Verification refuses (each a named :class:`WebhookRejected` reason, answered with 403):

* ``missing_signature`` — no signature or timestamp header while a key is configured;
* ``unsigned_not_allowed`` — no key configured and ``TIDINGS_SENDGRID_WEBHOOK_UNSIGNED``
  is not ``allow``: an open endpoint would let anyone suppress any address;
* ``stale_timestamp`` — the signed timestamp is older than
  ``TIDINGS_SENDGRID_WEBHOOK_MAX_AGE_SECONDS`` (default 25 hours), or more than
  :data:`FUTURE_SKEW_SECONDS` in the future. Why 25 hours and not minutes: SendGrid retries
  a POST that failed (our endpoint down, a deploy, a 5xx) for up to 24 hours, and does not
  document whether a retry is signed afresh; a short window would answer 403 to every
  retried batch after an outage, SendGrid would give up, and the bounces and spam reports
  in it (the suppressions) would be lost. The cost of the wide window is small: a signed
  request can only carry events SendGrid really sent, and storage dedupes on
  ``sg_event_id``, so replaying a captured request changes nothing;
* ``invalid_signature`` — the ECDSA P-256 / SHA-256 signature over ``timestamp + raw body``
  does not verify with the configured public key (``EventWebhook.verify_signature``).

Storage dedupes on ``sg_event_id`` (``delivery_event.provider_event_id`` is unique): SendGrid
retries deliveries, so the same event arriving twice is stored and acted upon once. Events
map back to outbox rows through the ``delivery_id`` custom arg the dispatcher sets.

Effects: ``bounce`` (hard; ``type: blocked`` is a soft bounce and stored as ``blocked``,
no suppression) → ``hard_bounce``; ``spamreport`` → ``spam_report`` and consent withdrawn;
``unsubscribe`` / ``group_unsubscribe`` → ``unsubscribe`` and consent withdrawn. A
``dropped`` event whose reason says SendGrid already holds the address on one of its own
suppression lists ("Bounced Address", "Spam Reporting Address", "Unsubscribed Address")
has the same effect as the event that put it there: those lists fill from events that may
never have reached us (the webhook was off, another app sends from the same account), and
without the suppression here every later campaign would plan, render and "send" to the
address while SendGrid silently drops it. All on the ``email`` channel.

Opens: an ``open`` with ``sg_machine_open: true`` was fetched by a machine (Apple Mail
Privacy Protection loads every image of every message when it arrives), not read by a
person: it is stored as type ``machine_open``, which no statistic counts as an open.
Other types (``processed``, ``delivered``, ``deferred``, other ``dropped``, ``click``,
``group_resubscribe``) are recorded only.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from engine.clock import Clock
from engine.errors import SettingsError
from engine.feedback import jsonsafe
from engine.feedback.consent import withdraw_consent
from engine.runtime.breaker import BreakerLimits, campaigns_of_deliveries, review
from engine.settings import Settings, UnsignedWebhooks
from engine.store.database import write_transaction
from engine.store.dialect import insert_for
from engine.store.models import Contact, Delivery, DeliveryEvent
from engine.store.suppressions import Reason, add_suppression, normalise_email

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_BATCH = 10_000
EMAIL_CHANNEL = "email"

#: SendGrid event → the suppression reason it creates.
#: Events the circuit breaker counts (a dropped event for a bounced address was a bounce already).
REVIEWED = frozenset({"bounce", "spamreport"})
SUPPRESSING: dict[str, str] = {
    "bounce": Reason.hard_bounce,
    "spamreport": Reason.spam_report,
    "unsubscribe": Reason.unsubscribe,
    "group_unsubscribe": Reason.unsubscribe,
}
#: Events that also withdraw marketing consent (the recipient said "stop", one way or another).
WITHDRAWING = frozenset({"spamreport", "unsubscribe", "group_unsubscribe"})
#: ``dropped`` reasons (lower-cased) → the event whose effect they repeat.
DROPPED_BECAUSE: dict[str, str] = {
    "bounced address": "bounce",
    "spam reporting address": "spamreport",
    "unsubscribed address": "unsubscribe",
}
MACHINE_OPEN = "machine_open"
#: How far in the future a signed timestamp may be (clock skew between SendGrid and us).
FUTURE_SKEW_SECONDS = 300


class WebhookRejected(Exception):
    """The request is not provably from SendGrid; ``reason`` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidPayload(ValueError):
    """Signed (or allowed unsigned) but not a JSON array of event objects."""


class WebhookVerifier:
    """Checks one request's signature; built once per app from settings."""

    def __init__(self, settings: Settings) -> None:
        key = settings.sendgrid_webhook_public_key
        self._max_age = settings.sendgrid_webhook_max_age_seconds
        self._allow_unsigned = settings.sendgrid_webhook_unsigned is UnsignedWebhooks.allow
        self._webhook: EventWebhook | None = None
        if key is not None:
            try:
                self._webhook = EventWebhook(key.get_secret_value().strip())
            except (ValueError, UnsupportedAlgorithm, TypeError):
                raise SettingsError(
                    "invalid settings: TIDINGS_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER EC public key"
                ) from None

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: datetime) -> None:
        if self._webhook is None:
            if self._allow_unsigned:
                return
            raise WebhookRejected("unsigned_not_allowed")
        if not signature or not timestamp:
            raise WebhookRejected("missing_signature")
        try:
            signed_at = datetime.fromtimestamp(int(timestamp.strip()), UTC)
        except (ValueError, OverflowError, OSError):
            raise WebhookRejected("stale_timestamp") from None
        age = (now - signed_at).total_seconds()
        if age > self._max_age or age < -FUTURE_SKEW_SECONDS:
            raise WebhookRejected("stale_timestamp")
        try:
            payload = body.decode("utf-8")
            valid = self._webhook.verify_signature(payload, signature.strip(), timestamp.strip())
        except (UnicodeDecodeError, binascii.Error, ValueError, InvalidSignature, TypeError):
            valid = False
        if not valid:
            raise WebhookRejected("invalid_signature")


def parse_events(body: bytes) -> list[dict[str, Any]]:
    try:
        data = jsonsafe.loads(body)
    except jsonsafe.UnsafeJSON as exc:
        raise InvalidPayload(str(exc)) from None
    if not isinstance(data, list):
        raise InvalidPayload("expected a JSON array of events")
    if len(data) > MAX_BATCH:
        raise InvalidPayload(f"at most {MAX_BATCH} events per request")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise InvalidPayload(f"event {index} is not an object")
        if not isinstance(item.get("event"), str) or not item["event"]:
            raise InvalidPayload(f"event {index}: missing 'event'")
    return data


@dataclass(frozen=True, slots=True)
class WebhookResult:
    received: int
    stored: int
    duplicates: int
    suppressions: int
    paused: list[str] = field(default_factory=list)  # campaigns the circuit breaker paused


def _event_id(item: dict[str, Any]) -> str:
    value = item.get("sg_event_id")
    if isinstance(value, str) and value:
        return value[:255]
    # No id (not SendGrid, or an old format): a digest of the event dedupes exact repeats.
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _occurred_at(item: dict[str, Any], now: datetime) -> datetime:
    value = item.get("timestamp")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            return now
    return now


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value)
    return None


def _text(value: Any, limit: int = 2000) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _type(item: dict[str, Any]) -> str:
    kind = str(item["event"])[:64]
    if kind == "bounce" and item.get("type") == "blocked":
        return "blocked"
    if kind == "open" and item.get("sg_machine_open") is True:
        return MACHINE_OPEN
    return kind


def _acts_as(kind: str, reason: str | None) -> str:
    """The event whose effect ``kind`` has: itself, or for a ``dropped`` the suppression list it names."""
    if kind == "dropped" and reason:
        return DROPPED_BECAUSE.get(reason.strip().lower(), kind)
    return kind


def _insert(conn: Connection) -> Any:
    table = DeliveryEvent.__table__  # type: ignore[attr-defined]
    return insert_for(conn, table)


def store_events(
    engine: Engine,
    events: Sequence[dict[str, Any]],
    *,
    clock: Clock,
    breaker: BreakerLimits | None = None,
) -> WebhookResult:
    """Store a verified batch; events already stored (same ``sg_event_id``) change nothing.

    With ``breaker``, the campaigns the new bounces and complaints concern are reviewed at once
    (:mod:`engine.runtime.breaker`) and paused when their rates pass its limits.
    """
    now = clock.now()
    by_id: dict[str, dict[str, Any]] = {}
    for item in events:
        by_id.setdefault(_event_id(item), item)
    deliveries = Delivery.__table__  # type: ignore[attr-defined]
    contacts = Contact.__table__  # type: ignore[attr-defined]
    table = DeliveryEvent.__table__  # type: ignore[attr-defined]
    suppressions = 0
    with write_transaction(engine) as conn:
        seen: set[str] = set()
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            seen.update(
                conn.execute(
                    select(table.c.provider_event_id).where(table.c.provider_event_id.in_(chunk))
                ).scalars()
            )
        fresh = {key: item for key, item in by_id.items() if key not in seen}
        wanted = {d for d in (_int(item.get("delivery_id")) for item in fresh.values()) if d is not None}
        known: dict[int, int | None] = {}
        wanted_list = sorted(wanted)
        for start in range(0, len(wanted_list), 500):
            chunk_ids = wanted_list[start : start + 500]
            for row in conn.execute(
                select(deliveries.c.id, deliveries.c.contact_id).where(deliveries.c.id.in_(chunk_ids))
            ):
                known[row.id] = row.contact_id
        emails = {normalise_email(e) for e in (_text(item.get("email"), 320) for item in fresh.values()) if e}
        contact_by_email: dict[str, int] = {}
        email_list = sorted(emails)
        for start in range(0, len(email_list), 500):
            for row in conn.execute(
                select(contacts.c.id, contacts.c.email).where(
                    contacts.c.email.in_(email_list[start : start + 500])
                )
            ):
                contact_by_email[row.email] = row.id
        rows: list[dict[str, Any]] = []
        for key, item in fresh.items():
            delivery_id = _int(item.get("delivery_id"))
            if delivery_id not in known:
                delivery_id = None
            email = _text(item.get("email"), 320)
            address = normalise_email(email) if email else None
            contact_id = known.get(delivery_id) if delivery_id is not None else None
            if contact_id is None and address is not None:
                contact_id = contact_by_email.get(address)
            kind = _type(item)
            rows.append(
                {
                    "provider_event_id": key,
                    "delivery_id": delivery_id,
                    "contact_id": contact_id,
                    "email": address,
                    "type": kind,
                    "occurred_at": _occurred_at(item, now),
                    "url": _text(item.get("url")),
                    "reason": _text(item.get("reason")) or _text(item.get("response")),
                    "payload": item,
                }
            )
        if rows:
            inserted = conn.execute(
                _insert(conn)
                .on_conflict_do_nothing(index_elements=["provider_event_id"])
                .returning(table.c.provider_event_id),
                rows,
            ).scalars()
            new_keys = set(inserted)
        else:
            new_keys = set()
        for event in rows:
            if event["provider_event_id"] not in new_keys or event["email"] is None:
                continue
            acts_as = _acts_as(event["type"], event["reason"])
            reason = SUPPRESSING.get(acts_as)
            if reason is None:
                continue
            source = f"sendgrid:{event['type']}"
            if add_suppression(
                conn, event["email"], channel=EMAIL_CHANNEL, reason=reason, now=now, source=source
            ):
                suppressions += 1
            if acts_as in WITHDRAWING and event["contact_id"] is not None:
                at = event["occurred_at"]
                withdraw_consent(conn, event["contact_id"], EMAIL_CHANNEL, at=at, source=source)
    stored = len(new_keys)
    if stored:
        log.info("stored %d SendGrid events (%d suppressions)", stored, suppressions)
    tripped: list[str] = []
    reviewed = {
        e["delivery_id"]
        for e in rows
        if e["provider_event_id"] in new_keys and e["delivery_id"] is not None and e["type"] in REVIEWED
    }
    if breaker is not None and reviewed:
        with engine.connect() as conn:
            campaigns = campaigns_of_deliveries(conn, reviewed)
        tripped = [trip.campaign_id for trip in review(engine, campaigns, clock=clock, limits=breaker)]
    return WebhookResult(len(events), stored, len(events) - stored, suppressions, tripped)


__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InvalidPayload",
    "WebhookRejected",
    "WebhookResult",
    "WebhookVerifier",
    "parse_events",
    "store_events",
]
