"""Shop events: their schemas, and ingestion that is idempotent on the shop's own event id.

A shop posts ``{id, type, occurred_at, contact: {...}, data: {...}}`` (one or a list).
Each event is validated on its own against its type's schema (:func:`check_events`); every
problem is reported with the event's index and the field's dotted path, so a shop developer
can fix the exporter without guessing. A batch is not all-or-nothing: the valid events are
stored and the invalid ones reported (the public app answers ``207 Multi-Status`` for such
a mixed batch, see :mod:`engine.web.public`), so one bad event never makes a shop resend,
or lose, the good ones.

Every value is checked before it reaches the database, as an import checks it
(:mod:`engine.inbound`): one RFC 5322 address per email (stored in ASCII form, lower-cased),
names and ids on one line, and no NUL character, lone surrogate or nesting deeper than 32
levels anywhere in the event (PostgreSQL refuses the first two; the third once turned a
valid-looking event into a 500 the shop would retry forever).

Ingestion of the valid events happens in one transaction:

1. events whose ``id`` is already stored (or repeated within the batch) are duplicates
   and change nothing;
2. contacts are upserted by email (given fields overwrite; absent ones are kept);
3. consent grants / withdrawals are recorded with their evidence (source, wording
   version, legal basis, the event's time);
4. orders and gift cards are upserted from ``order.*`` and ``gift_card.*`` events and the
   contact aggregates (``orders_count``, ``total_spent``, ``last_order_at``) recomputed
   from the orders in SQL, so replays and out-of-order events still add up;
5. the ``shop_event`` rows are written (the payload is the event's validated ``data``, as
   templates read it: ``event.data.order_id``) and their ids returned, for the caller to enrol
   contacts in event-triggered campaigns after the commit.

Each type's ``data`` schema lives in :mod:`engine.transfer.event_data`, shared with ``import``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from engine.feedback.consent import grant_consent, withdraw_consent
from engine.inbound import single_line, unstorable_json
from engine.store.database import write_transaction
from engine.store.models import Contact, GiftCard, OrderStatus, ShopEvent, ShopOrder, valid_zone
from engine.transfer.event_data import (
    DATA_SCHEMAS,
    EventData,
    GiftCardPurchased,
    GiftCardRedeemed,
    OrderPlaced,
    OrderUpdate,
    Text,
    check_country,
    check_email,
    check_locale,
)
from engine.workspace.values import EVENT_TYPES

MAX_BATCH = 5_000
KNOWN_TYPES = EVENT_TYPES
_CUSTOM = re.compile(r"^custom\.[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_ERRORS = 100  # field errors listed in one answer (every rejected event is still counted)
Name = Annotated[str, AfterValidator(lambda value: single_line(value, field="the name", max_length=200))]


def _aware_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("date-time out of range") from None


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: bool
    source: Text
    wording_version: Text | None = None
    legal_basis: Literal["consent", "legitimate_interest", "contract", "soft_opt_in"] = "consent"


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    external_id: Text | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    locale: str | None = None
    country: str | None = None
    timezone: str | None = None
    x_handle: Annotated[str, Field(max_length=100), AfterValidator(single_line)] | None = None
    consent: dict[Literal["email", "x", "sms"], ConsentIn] | None = None

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_email(value)

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return None if value is None else check_locale(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return valid_zone(value)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Text
    type: str
    occurred_at: AwareDatetime
    contact: ContactIn
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in KNOWN_TYPES and not _CUSTOM.match(value):
            raise ValueError(f"unknown event type (expected one of {', '.join(KNOWN_TYPES)}, or custom.NAME)")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _aware_utc(value)


@dataclass(frozen=True, slots=True)
class ShopEventIn:
    """A validated event: the envelope plus its typed data (None for free-form types)."""

    event: EventIn
    data: EventData | None


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidEvents(ValueError):
    """One or more events failed validation; ``errors`` says which and where."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


def _loc(prefix: str, loc: Sequence[Any]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(part) for part in loc]
    return ".".join(parts) or "(event)"


@dataclass
class EventBatch:
    """A posted batch checked event by event: the valid events and the problems of the others."""

    received: int
    valid: list[ShopEventIn] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)  # indexes of the events not stored
    errors: list[FieldError] = field(default_factory=list)  # at most MAX_ERRORS, in index order


def check_events(body: Any, *, max_batch: int = MAX_BATCH) -> EventBatch:
    """Check each event of ``body`` (one event object or a list) on its own.

    Raises :class:`InvalidEvents` only when the body as a whole is wrong: not an event or a
    list of them, an empty list, or more than ``max_batch`` events.
    """
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidEvents(
            [FieldError(0, "(body)", "expected an event object or a non-empty list of events")]
        )
    if len(items) > max_batch:
        raise InvalidEvents(
            [FieldError(0, "(body)", f"at most {max_batch} events per request, got {len(items)}")]
        )
    batch = EventBatch(received=len(items))
    for index, item in enumerate(items):
        problems = _event_problems(index, item)
        if isinstance(problems, ShopEventIn):
            batch.valid.append(problems)
            continue
        batch.rejected.append(index)
        batch.errors.extend(problems[: max(MAX_ERRORS - len(batch.errors), 0)])
    return batch


def validate_events(body: Any, *, max_batch: int = MAX_BATCH) -> list[ShopEventIn]:
    """Every event of ``body`` typed, or :class:`InvalidEvents` naming every problem (all or nothing)."""
    batch = check_events(body, max_batch=max_batch)
    if batch.rejected:
        raise InvalidEvents(batch.errors)
    return batch.valid


def _event_problems(index: int, item: Any) -> ShopEventIn | list[FieldError]:
    """The typed event, or what is wrong with it (at most 20 field errors)."""
    if not isinstance(item, dict):
        return [FieldError(index, "(event)", "expected an object")]
    unstorable = unstorable_json(item)
    if unstorable is not None:
        return [FieldError(index, unstorable.path or "(event)", unstorable.message)]
    try:
        envelope = EventIn.model_validate(item)
    except ValidationError as exc:
        return [FieldError(index, _loc("", e["loc"]), _message(e["msg"])) for e in exc.errors()[:20]]
    schema = DATA_SCHEMAS.get(envelope.type)
    data = None
    if schema is not None:
        try:
            data = schema.model_validate(envelope.data)
        except ValidationError as exc:
            return [FieldError(index, _loc("data", e["loc"]), _message(e["msg"])) for e in exc.errors()[:20]]
        moment = getattr(data, "placed_at", None)
        if moment is not None:
            try:
                data.placed_at = _aware_utc(moment)  # type: ignore[attr-defined]
            except ValueError as exc:
                return [FieldError(index, "data.placed_at", str(exc))]
    return ShopEventIn(envelope, data)


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")


@dataclass(frozen=True, slots=True)
class IngestResult:
    received: int
    stored_ids: list[int] = field(default_factory=list)
    duplicates: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "stored": len(self.stored_ids), "duplicate": self.duplicates}


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _upsert(conn: Connection, model: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(_table(model))


def _chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


_CONTACT_FIELDS = ("external_id", "first_name", "last_name", "locale", "country", "timezone", "x_handle")


def _upsert_contacts(conn: Connection, events: list[ShopEventIn], now: datetime) -> dict[str, int]:
    """Create or update every contact named in the batch; returns email → id.

    A gift card's recipient becomes a contact (without any consent: the card is theirs, the
    newsletter is not). What the buyer typed about them (name, locale, country) fills only
    what is still empty: a recipient who is already a customer keeps their own details.
    """
    contacts = _table(Contact)
    wanted: dict[str, dict[str, Any]] = {}
    recipient_fill: dict[str, dict[str, Any]] = {}
    first_seen: dict[str, datetime] = {}
    for item in events:
        given = item.event.contact.model_dump(include=set(_CONTACT_FIELDS), exclude_none=True)
        email = item.event.contact.email
        wanted.setdefault(email, {}).update(given)
        first_seen[email] = min(first_seen.get(email, item.event.occurred_at), item.event.occurred_at)
        if isinstance(item.data, GiftCardPurchased) and item.data.recipient_email:
            recipient = item.data.recipient_email
            wanted.setdefault(recipient, {})
            first_seen.setdefault(recipient, item.event.occurred_at)
            fill = recipient_fill.setdefault(recipient, {})
            for name, value in _recipient_fields(item.data).items():
                fill.setdefault(name, value)
    emails = sorted(wanted)
    ids: dict[str, int] = {}
    for chunk in _chunks(emails):
        for row in conn.execute(select(contacts.c.id, contacts.c.email).where(contacts.c.email.in_(chunk))):
            ids[row.email] = row.id
    # external ids already held by another address must not break the batch: keep the first holder.
    external = sorted({fields["external_id"] for fields in wanted.values() if "external_id" in fields})
    taken: dict[str, str] = {}
    for chunk in _chunks(external):
        for row in conn.execute(
            select(contacts.c.external_id, contacts.c.email).where(contacts.c.external_id.in_(chunk))
        ):
            taken[row.external_id] = row.email
    for email, fields in wanted.items():
        holder = taken.setdefault(fields.get("external_id", ""), email) if "external_id" in fields else email
        if holder != email:
            fields.pop("external_id")
    new_rows: list[dict[str, Any]] = [
        {
            "email": email,
            **{
                name: wanted[email].get(name, recipient_fill.get(email, {}).get(name))
                for name in _CONTACT_FIELDS
            },
            "tags": [],
            "attributes": {},
            "orders_count": 0,
            "total_spent": Decimal("0.00"),
            "first_seen_at": first_seen[email],
            "created_at": now,
            "updated_at": now,
        }
        for email in emails
        if email not in ids
    ]
    if new_rows:
        conn.execute(_table(Contact).insert(), new_rows)
        for chunk in _chunks([row["email"] for row in new_rows]):
            for row in conn.execute(
                select(contacts.c.id, contacts.c.email).where(contacts.c.email.in_(chunk))
            ):
                ids[row.email] = row.id
    existing = [email for email in emails if email not in {row["email"] for row in new_rows}]
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for email in existing:
        fields = wanted[email]
        if fields:
            shape = tuple(sorted(fields))
            by_shape.setdefault(shape, []).append({"_id": ids[email], **fields, "_now": now})
    for shape, rows in by_shape.items():
        statement = (
            update(contacts)
            .where(contacts.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in shape} | {"updated_at": bindparam("_now")})
        )
        conn.execute(statement, rows)
    _fill_blanks(conn, {ids[email]: recipient_fill[email] for email in existing if email in recipient_fill})
    seen_rows = [{"_id": ids[email], "_seen": first_seen[email]} for email in existing]
    if seen_rows:
        conn.execute(
            update(contacts)
            .where(
                contacts.c.id == bindparam("_id"),
                (contacts.c.first_seen_at.is_(None)) | (contacts.c.first_seen_at > bindparam("_seen")),
            )
            .values(first_seen_at=bindparam("_seen")),
            seen_rows,
        )
    return ids


def _recipient_fields(data: GiftCardPurchased) -> dict[str, str]:
    """Contact fields from what the buyer said about the recipient (the name split at its first space)."""
    fields: dict[str, str] = {}
    if data.recipient_name:
        first, _, last = data.recipient_name.partition(" ")
        fields["first_name"] = first
        if last:
            fields["last_name"] = last
    if data.recipient_locale:
        fields["locale"] = data.recipient_locale
    if data.recipient_country:
        fields["country"] = data.recipient_country
    return fields


def _fill_blanks(conn: Connection, fills: dict[int, dict[str, str]]) -> None:
    """Set each field only where the contact has none yet."""
    contacts = _table(Contact)
    by_field: dict[str, list[dict[str, Any]]] = {}
    for contact_id, fields in fills.items():
        for name, value in fields.items():
            by_field.setdefault(name, []).append({"_id": contact_id, "_value": value})
    for name, rows in by_field.items():
        column = contacts.c[name]
        conn.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("_id"), column.is_(None))
            .values({name: bindparam("_value")}),
            rows,
        )


def _apply_consents(conn: Connection, events: list[ShopEventIn], ids: dict[str, int]) -> None:
    for item in sorted(events, key=lambda e: e.event.occurred_at):
        contact = item.event.contact
        for channel, consent in (contact.consent or {}).items():
            contact_id = ids[contact.email]
            source = f"{consent.source} (event {item.event.id})"
            if consent.granted:
                grant_consent(
                    conn,
                    contact_id,
                    channel,
                    at=item.event.occurred_at,
                    source=consent.source,
                    wording_version=consent.wording_version,
                    legal_basis=consent.legal_basis,
                )
            else:
                withdraw_consent(conn, contact_id, channel, at=item.event.occurred_at, source=source)


_ORDER_STATUS = {
    "order.shipped": (OrderStatus.shipped.value, "shipped_at"),
    "order.delivered": (OrderStatus.delivered.value, "delivered_at"),
    "order.problem": (OrderStatus.problem.value, None),
}


def _apply_orders(conn: Connection, events: list[ShopEventIn], ids: dict[str, int]) -> set[int]:
    touched: set[int] = set()
    for item in sorted(events, key=lambda e: e.event.occurred_at):
        data, event = item.data, item.event
        contact_id = ids[event.contact.email]
        if isinstance(data, OrderPlaced):
            placed_at = data.placed_at or event.occurred_at
            values = {
                "contact_id": contact_id,
                "placed_at": placed_at,
                "total": data.total.quantize(Decimal("0.01")),
                "currency": data.currency,
                "shipping_country": data.shipping_country.upper() if data.shipping_country else None,
                "shipping_method": data.shipping_method,
                "is_gift": data.is_gift,
                "items": data.items,
            }
            statement = _upsert(conn, ShopOrder).values(external_id=data.order_id, **values)
            conn.execute(statement.on_conflict_do_update(index_elements=["external_id"], set_=values))
            touched.add(contact_id)
        elif isinstance(data, OrderUpdate) and event.type in _ORDER_STATUS:
            status, stamp = _ORDER_STATUS[event.type]
            changes: dict[str, Any] = {"status": status}
            if stamp:
                changes[stamp] = event.occurred_at
            if event.type == "order.problem":
                changes["problem"] = data.problem or "problem reported"
            statement = _upsert(conn, ShopOrder).values(
                external_id=data.order_id,
                contact_id=contact_id,
                placed_at=event.occurred_at,
                items=[],
                **changes,
            )
            conn.execute(statement.on_conflict_do_update(index_elements=["external_id"], set_=changes))
            touched.add(contact_id)
    return touched


def _apply_gift_cards(conn: Connection, events: list[ShopEventIn], ids: dict[str, int]) -> None:
    for item in sorted(events, key=lambda e: e.event.occurred_at):
        data, event = item.data, item.event
        contact_id = ids[event.contact.email]
        if isinstance(data, GiftCardPurchased):
            values: dict[str, Any] = {
                "purchaser_contact_id": contact_id,
                "amount": data.amount.quantize(Decimal("0.01")),
                "currency": data.currency,
                "code_last4": data.code_last4,
                "is_digital": data.is_digital,
                "issued_at": event.occurred_at,
            }
            if data.recipient_email:
                values["recipient_contact_id"] = ids[data.recipient_email]
            statement = _upsert(conn, GiftCard).values(
                external_id=data.gift_card_id, balance=values["amount"], **values
            )
            conn.execute(statement.on_conflict_do_update(index_elements=["external_id"], set_=values))
        elif isinstance(data, GiftCardRedeemed):
            cards = _table(GiftCard)
            values = {
                "recipient_contact_id": contact_id,
                "amount": data.amount.quantize(Decimal("0.01")),
                "balance": data.balance.quantize(Decimal("0.01")),
                "currency": data.currency,
            }
            statement = _upsert(conn, GiftCard).values(
                external_id=data.gift_card_id,
                issued_at=event.occurred_at,
                redeemed_at=event.occurred_at,
                code_last4=data.code_last4,
                **values,
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["external_id"],
                    set_=values | {"redeemed_at": func.coalesce(cards.c.redeemed_at, event.occurred_at)},
                )
            )


def _refresh_aggregates(conn: Connection, contact_ids: set[int]) -> None:
    """Recompute order aggregates from the orders themselves: replays and reordering cannot skew them."""
    contacts, orders = _table(Contact), _table(ShopOrder)
    counted = and_(orders.c.contact_id == contacts.c.id, orders.c.status != OrderStatus.cancelled.value)
    for chunk in _chunks(sorted(contact_ids)):
        conn.execute(
            update(contacts)
            .where(contacts.c.id.in_(chunk))
            .values(
                orders_count=select(func.count(orders.c.id)).where(counted).scalar_subquery(),
                total_spent=select(func.coalesce(func.sum(orders.c.total), 0))
                .where(counted)
                .scalar_subquery(),
                last_order_at=select(func.max(orders.c.placed_at)).where(counted).scalar_subquery(),
            )
        )


def _payload(item: ShopEventIn) -> dict[str, Any]:
    """What is stored as the event's payload: its data, as flat as the demo shop's and the import's.

    Templates read it as ``event.data`` and the runtime finds ``order_id`` / ``gift_card_id`` in
    it; the envelope (id, type, time, contact) lives in the row's own columns and the contact.
    """
    if item.data is not None:
        return item.data.model_dump(mode="json", exclude_none=True)
    return dict(item.event.data)


def _store_events(
    conn: Connection, events: list[ShopEventIn], ids: dict[str, int], now: datetime
) -> list[int]:
    rows = [
        {
            "external_id": item.event.id,
            "type": item.event.type,
            "contact_id": ids[item.event.contact.email],
            "occurred_at": item.event.occurred_at,
            "received_at": now,
            "payload": _payload(item),
        }
        for item in events
    ]
    table = _table(ShopEvent)
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(row_id) for row_id in result.scalars()]


def _ingest_once(engine: Engine, events: list[ShopEventIn], now: datetime) -> IngestResult:
    unique: dict[str, ShopEventIn] = {}
    for item in events:
        unique.setdefault(item.event.id, item)
    table = _table(ShopEvent)
    with write_transaction(engine) as conn:
        stored: set[str] = set()
        for chunk in _chunks(list(unique)):
            stored.update(
                conn.execute(select(table.c.external_id).where(table.c.external_id.in_(chunk))).scalars()
            )
        fresh = [item for key, item in unique.items() if key not in stored]
        if not fresh:
            return IngestResult(len(events), [], len(events))
        ids = _upsert_contacts(conn, fresh, now)
        _apply_consents(conn, fresh, ids)
        touched = _apply_orders(conn, fresh, ids)
        _apply_gift_cards(conn, fresh, ids)
        if touched:
            _refresh_aggregates(conn, touched)
        new_ids = _store_events(conn, fresh, ids, now)
    return IngestResult(len(events), new_ids, len(events) - len(new_ids))


def ingest_events(engine: Engine, events: list[ShopEventIn], *, now: datetime) -> IngestResult:
    """Store a validated batch once; losing a race to a request with the same ids retries as duplicates."""
    try:
        return _ingest_once(engine, events, now)
    except IntegrityError:
        # Another request committed some of these ids (or contacts) first; the retry sees them.
        return _ingest_once(engine, events, now)
