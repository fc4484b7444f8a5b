"""What a row of each kind may hold, validated with pydantic, and how it looks in a file.

Columns are named after the table's fields; other rows are referred to by natural keys
(contacts by ``email``, orders, gift cards and events by ``external_id``). In CSV, ``tags``
is ``a;b``, custom fields are ``attributes.KEY`` columns, and JSON-valued fields (order
``items``, event ``payload``) hold JSON text. An empty CSV cell means "not given" (the stored
value stays); in JSON Lines a missing key means the same and ``null`` clears a value.

Every value is checked before a row reaches the database (:mod:`engine.inbound`): one RFC 5322
address per email column (stored in ASCII form, lower-cased), names, ids and tags on one line,
and no NUL character or lone surrogate anywhere, nested JSON included — PostgreSQL refuses
both, and one such row must be that row's problem, never the import's.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from babel import Locale, UnknownLocaleError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from engine.inbound import InvalidValue, email_address, single_line, unstorable_json
from engine.store.models import OrderStatus, valid_zone
from engine.transfer.event_data import DATA_SCHEMAS
from engine.transfer.kinds import Kind
from engine.workspace.values import EVENT_TYPES as KNOWN_EVENT_TYPES

ATTRIBUTE_PREFIX = "attributes."
CHANNELS = ("email", "x")
CONSENT_PARTS = ("at", "source", "wording", "basis")
EVENT_TYPES = frozenset(KNOWN_EVENT_TYPES)  # the workspace's list: one definition of DESIGN's types
_HANDLE = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^-?(0|[1-9][0-9]*)\.[0-9]+$")


# --- field types ----------------------------------------------------------------------


def _email(value: str) -> str:
    return email_address(value)


def _line(max_length: int) -> AfterValidator:
    return AfterValidator(lambda value: single_line(value, field="the value", max_length=max_length))


def _zone(value: str) -> str:
    zone = valid_zone(value)
    assert zone is not None
    return zone


def _locale(value: str) -> str:
    try:
        Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise ValueError(f"unknown locale {value!r} (e.g. en, ro, et, ro-RO)") from None
    return value


def _country(value: str) -> str:
    if len(value) != 2 or not value.isalpha():
        raise ValueError(f"expected an ISO 3166 two-letter country code, got {value!r}")
    return value.upper()


def _currency(value: str) -> str:
    if len(value) != 3 or not value.isalpha():
        raise ValueError(f"expected an ISO 4217 currency code such as EUR, got {value!r}")
    return value.upper()


def _handle(value: str) -> str:
    value = value.removeprefix("@")
    if not _HANDLE.match(value):
        raise ValueError(f"not an X handle: {value!r} (letters, digits and _, at most 15)")
    return value


def _event_type(value: str) -> str:
    if value in EVENT_TYPES or (value.startswith("custom.") and len(value) > len("custom.")):
        return value
    raise ValueError(
        f"unknown event type {value!r} (expected one of {', '.join(sorted(EVENT_TYPES))} or custom.*)"
    )


def _tags(value: list[str]) -> list[str]:
    return [single_line(tag, field="a tag", max_length=100) for tag in value if tag and tag.strip()]


Email = Annotated[str, AfterValidator(_email)]
Zone = Annotated[str, AfterValidator(_zone)]
LocaleCode = Annotated[str, AfterValidator(_locale)]
Country = Annotated[str, AfterValidator(_country)]
Currency = Annotated[str, AfterValidator(_currency)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
Key = Annotated[str, Field(min_length=1, max_length=255), _line(255)]
Name = Annotated[str, _line(200)]
Line = Annotated[str, _line(255)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, values: Any) -> Any:
        """No NUL character, lone surrogate or over-deep nesting anywhere in the row, named by its path."""
        problem = unstorable_json(values)
        if problem:
            raise InvalidValue(str(problem))
        return values


class ContactRow(_Row):
    email: Email
    external_id: Key | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    locale: LocaleCode | None = None
    country: Country | None = None
    timezone: Zone | None = None
    x_handle: Annotated[str, AfterValidator(_handle)] | None = None
    tags: Annotated[list[str], AfterValidator(_tags)] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    first_seen_at: AwareDatetime | None = None
    last_order_at: AwareDatetime | None = None
    orders_count: Annotated[int, Field(ge=0)] = 0
    total_spent: Money = Decimal("0.00")
    consent_email: bool | None = None
    consent_email_at: AwareDatetime | None = None
    consent_email_source: Line | None = None
    consent_email_wording: Line | None = None
    consent_email_basis: Line | None = None
    consent_x: bool | None = None
    consent_x_at: AwareDatetime | None = None
    consent_x_source: Line | None = None
    consent_x_wording: Line | None = None
    consent_x_basis: Line | None = None

    @model_validator(mode="after")
    def _evidence_needs_consent(self) -> ContactRow:
        for channel in CHANNELS:
            if getattr(self, f"consent_{channel}") is None:
                given = [
                    f"consent_{channel}_{part}"
                    for part in CONSENT_PARTS
                    if getattr(self, f"consent_{channel}_{part}") is not None
                ]
                if given:
                    raise ValueError(f"{given[0]} given without consent_{channel} (yes or no)")
        return self


class OrderRow(_Row):
    external_id: Key
    email: Email
    status: OrderStatus = OrderStatus.placed
    placed_at: AwareDatetime
    shipped_at: AwareDatetime | None = None
    delivered_at: AwareDatetime | None = None
    returned_at: AwareDatetime | None = None
    problem: Annotated[str, Field(max_length=2000)] | None = None
    shipping_country: Country | None = None
    shipping_method: Line | None = None
    total: Money = Decimal("0.00")
    currency: Currency = "EUR"
    is_gift: bool = False
    items: list[dict[str, Any]] = Field(default_factory=list)


class GiftCardRow(_Row):
    external_id: Key
    code_last4: Annotated[str, Field(max_length=8)] | None = None
    purchaser_email: Email | None = None
    recipient_email: Email | None = None
    amount: Money
    balance: Money | None = None
    currency: Currency = "EUR"
    issued_at: AwareDatetime
    redeemed_at: AwareDatetime | None = None
    is_digital: bool = True

    @model_validator(mode="after")
    def _balance_within_amount(self) -> GiftCardRow:
        if self.balance is not None and self.balance > self.amount:
            raise ValueError(f"balance {self.balance} is more than the card's amount {self.amount}")
        return self


class EventRow(_Row):
    """A shop event; its payload is checked against its type's data schema, as ``POST /events`` does."""

    external_id: Key
    type: Annotated[str, AfterValidator(_event_type)]
    email: Email | None = None
    occurred_at: AwareDatetime
    received_at: AwareDatetime | None = None
    processed_at: AwareDatetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _payload_fits_its_type(self) -> EventRow:
        schema = DATA_SCHEMAS.get(self.type)
        if schema is not None:
            try:
                schema.model_validate(self.payload)  # checked, kept as written: export gives it back
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first.get("loc", ()))
                message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
                raise ValueError(f"payload.{where}: {message}") from None
        return self


MODELS: dict[Kind, type[_Row]] = {
    Kind.contacts: ContactRow,
    Kind.orders: OrderRow,
    Kind.gift_cards: GiftCardRow,
    Kind.events: EventRow,
}

# Column order in exported files (contacts' attributes.KEY columns follow, sorted).
COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.contacts: (
        "email",
        "external_id",
        "first_name",
        "last_name",
        "locale",
        "country",
        "timezone",
        "x_handle",
        "tags",
        "attributes",
        "first_seen_at",
        "last_order_at",
        "orders_count",
        "total_spent",
        *(
            f"consent_{channel}{suffix}"
            for channel in CHANNELS
            for suffix in ("", "_at", "_source", "_wording", "_basis")
        ),
    ),
    Kind.orders: tuple(OrderRow.model_fields),
    Kind.gift_cards: tuple(GiftCardRow.model_fields),
    Kind.events: tuple(EventRow.model_fields),
}
KEYS: dict[Kind, str] = {
    Kind.contacts: "email",
    Kind.orders: "external_id",
    Kind.gift_cards: "external_id",
    Kind.events: "external_id",
}
_JSON_CELLS = {"items", "payload"}


# --- CSV cells <-> values ---------------------------------------------------------------


def check_header(kind: Kind, header: list[str]) -> list[str]:
    """Problems with a CSV header (unknown, duplicate or missing columns), as messages."""
    import difflib

    model = MODELS[kind]
    known = set(model.model_fields) - {"attributes"}
    problems: list[str] = []
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(f"column {name!r} appears twice")
        seen.add(name)
        if kind is Kind.contacts and name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
            continue
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown column {name!r}{hint}")
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    problems.extend(f"missing column {name!r}" for name in required if name not in seen)
    return problems


def parse_attribute_cell(cell: str) -> Any:
    """``12`` → 12, ``true`` → True, ``[1,2]`` → [1, 2], anything else stays text (``01234`` too)."""
    if cell in ("true", "false"):
        return cell == "true"
    if _INTEGER.match(cell):
        return int(cell)
    if _FLOAT.match(cell):
        return float(cell)
    if cell[:1] in ("[", "{"):
        try:
            return json.loads(cell)
        except (json.JSONDecodeError, RecursionError):
            return cell
    return cell


def format_attribute_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def from_csv(kind: Kind, cells: dict[str, str]) -> dict[str, Any]:
    """Model input from CSV cells: empty cells dropped, tags split, attributes gathered, JSON parsed."""
    values: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, raw in cells.items():
        cell = raw.strip()
        if not cell:
            continue
        if name.startswith(ATTRIBUTE_PREFIX) and kind is Kind.contacts:
            attributes[name[len(ATTRIBUTE_PREFIX) :]] = parse_attribute_cell(cell)
        elif name == "tags":
            values["tags"] = cell.split(";")
        elif name in _JSON_CELLS:
            try:
                values[name] = json.loads(cell)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise ValueError(f"{name}: not valid JSON (nested too deeply to read)") from None
        else:
            values[name] = cell
    if attributes:
        values["attributes"] = attributes
    return values


def validate(kind: Kind, values: dict[str, Any]) -> _Row:
    return MODELS[kind].model_validate(values)


def describe(error: ValidationError) -> str:
    """One line for a rejected row: ``field: message`` for each problem."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        if item.get("type") == "timezone_aware":
            message = "needs a time zone offset, e.g. 2026-12-01T10:00:00+02:00"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


# --- values -> file cells ---------------------------------------------------------------


def to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def to_csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if name == "tags":
        return ";".join(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return str(value)
