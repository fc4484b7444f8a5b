"""What a template and a campaign EXPR may read: every context name, each record's fields, their types.

This is the one definition of a message's context (DESIGN.md "Template context"). It has four
readers, so that what ``validate`` accepts is what a send can render:

* :mod:`engine.render.context` builds the records of a real message from store rows with exactly
  these fields (``contact_record`` and the others iterate over :data:`RECORDS`), and
  :mod:`engine.runtime.message_context` assembles them for plan, flows, simulate and the send;
* a template's ``sample.yaml`` is typed by it (:func:`coerce`): money and percentages become
  ``Decimal``, ids whole numbers, date-times aware, free-form data (``event.data``,
  ``contact.attributes``) what JSON would give (text, numbers, booleans) — so a sample cannot
  pass where a real value fails (``gift_card.amount * 1.15`` is ``Decimal * float`` for both);
* ``validate`` and the workspace loader read the attribute names templates and expressions use
  against it (:func:`unknown_attributes`): ``contact.frist_name`` is a problem at its line with
  "did you mean 'first_name'?", not an empty gap (templates) or a silent ``false`` (expressions);
* the renderer's runtime errors offer the same did-you-mean (:func:`suggest_attribute`).

Types are kinds, not Python classes, because a sample is written in YAML: a kind says what a
YAML value becomes (``coerce``) and what a store value is (the store's column types are checked
against these kinds by the test suite).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from jinja2 import nodes


class Kind(StrEnum):
    """What a field holds."""

    text = "text"
    integer = "whole number"
    money = "amount"  # Decimal: money, percentages
    boolean = "true/false"
    moment = "date and time"  # aware datetime
    day = "date"
    texts = "list of texts"
    items = "list"  # free-form entries (an order's items), as stored (JSON)
    data = "mapping"  # free-form keys (event.data, contact.attributes), as stored (JSON)
    record = "record"  # a nested record (shop.support)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    nullable: bool = True
    record: RecordSpec | None = None  # for Kind.record


@dataclass(frozen=True)
class RecordSpec:
    """A record templates read by attribute (``order.total``): its fields and their kinds."""

    name: str
    fields: tuple[FieldSpec, ...]
    by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {spec.name: spec for spec in self.fields})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)


def _f(name: str, kind: Kind, *, nullable: bool = True, record: RecordSpec | None = None) -> FieldSpec:
    return FieldSpec(name, kind, nullable, record)


T, INT, M, B = Kind.text, Kind.integer, Kind.money, Kind.boolean
AT, DAY = Kind.moment, Kind.day

CONTACT = RecordSpec(
    "contact",
    (
        _f("id", INT, nullable=False),
        _f("email", T, nullable=False),
        _f("first_name", T),
        _f("last_name", T),
        _f("name", T),
        _f("locale", T),
        _f("country", T),
        _f("timezone", T),
        _f("timezone_source", T),
        _f("x_handle", T),
        _f("tags", Kind.texts, nullable=False),
        _f("attributes", Kind.data, nullable=False),
        _f("orders_count", INT, nullable=False),
        _f("total_spent", M, nullable=False),
        _f("first_seen_at", AT),
        _f("last_order_at", AT),
    ),
)
ORDER = RecordSpec(
    "order",
    (
        _f("id", T, nullable=False),
        _f("number", T, nullable=False),
        _f("status", T, nullable=False),
        _f("placed_at", AT, nullable=False),
        _f("shipped_at", AT),
        _f("delivered_at", AT),
        _f("returned_at", AT),
        _f("problem", T),
        _f("shipping_country", T),
        _f("shipping_method", T),
        _f("total", M, nullable=False),
        _f("currency", T, nullable=False),
        _f("is_gift", B, nullable=False),
        _f("items", Kind.items, nullable=False),
    ),
)
GIFT_CARD = RecordSpec(
    "gift_card",
    (
        _f("id", T, nullable=False),
        _f("code_last4", T),
        _f("amount", M, nullable=False),
        _f("balance", M, nullable=False),
        _f("currency", T, nullable=False),
        _f("issued_at", AT, nullable=False),
        _f("redeemed_at", AT),
        _f("is_digital", B, nullable=False),
    ),
)
CUTOFF = RecordSpec(
    "cutoff",
    (
        _f("country", T, nullable=False),
        _f("method", T, nullable=False),
        _f("carrier", T, nullable=False),
        _f("order_by", AT, nullable=False),
        _f("deliver_before", DAY, nullable=False),
    ),
)
COUPON = RecordSpec(
    "coupon",
    (
        _f("code", T, nullable=False),
        _f("percent", M, nullable=False),
        _f("expires_at", AT),
        _f("placeholder", B),
    ),
)
EVENT = RecordSpec(
    "event",
    (
        _f("type", T, nullable=False),
        _f("occurred_at", AT, nullable=False),
        _f("data", Kind.data, nullable=False),
    ),
)
CAMPAIGN = RecordSpec("campaign", (_f("id", T, nullable=False), _f("name", T, nullable=False)))
SUPPORT = RecordSpec(
    "shop.support",
    (_f("email", T), _f("phone", T), _f("phone_dial", T), _f("chat_url", T), _f("hours", T)),
)
SHOP = RecordSpec(
    "shop",
    (
        _f("name", T, nullable=False),
        _f("url", T, nullable=False),
        _f("postal_address", T, nullable=False),
        _f("returns_policy_url", T, nullable=False),
        _f("support", Kind.record, nullable=False, record=SUPPORT),
        _f("images_url", T, nullable=False),
    ),
)

#: Every record a template reads by attribute, by its context name.
RECORDS: dict[str, RecordSpec] = {
    spec.name: spec for spec in (CONTACT, CAMPAIGN, SHOP, ORDER, GIFT_CARD, CUTOFF, COUPON, EVENT)
}

#: The context: always present, then present-or-none (DESIGN.md "Template context").
ALWAYS: tuple[FieldSpec, ...] = (
    _f("contact", Kind.record, nullable=False, record=CONTACT),
    _f("campaign", Kind.record, nullable=False, record=CAMPAIGN),
    _f("shop", Kind.record, nullable=False, record=SHOP),
    _f("unsubscribe_url", T),
    _f("now", AT, nullable=False),
    _f("occurrence", AT, nullable=False),
)
OPTIONAL: tuple[FieldSpec, ...] = (
    _f("order", Kind.record, record=ORDER),
    _f("gift_card", Kind.record, record=GIFT_CARD),
    _f("cutoff", Kind.record, record=CUTOFF),
    _f("coupon", Kind.record, record=COUPON),
    _f("event", Kind.record, record=EVENT),
    _f("trigger_date", DAY),
)
CONTEXT: RecordSpec = RecordSpec("context", ALWAYS + OPTIONAL)
CONTEXT_NAMES: tuple[str, ...] = CONTEXT.names
#: Also present while an email renders: its rendered subject and preheader (``<mj-title>``).
MESSAGE_NAMES: tuple[str, ...] = ("subject", "preheader")
#: Functions every template and expression gets.
FUNCTIONS: tuple[str, ...] = ("days_until",)
#: A key a ``sample.yaml`` may have besides the context names: the locale the preview opens in.
SAMPLE_ONLY: tuple[FieldSpec, ...] = (_f("locale", T),)


# ---------------------------------------------------------------------------------------------
# Typing a sample value


class ValueProblem(ValueError):
    """A sample value that cannot have the kind its field has."""


def coerce(kind: Kind, value: Any, zone: tzinfo) -> Any:
    """``value`` (plain YAML data) as the store would give it for a field of ``kind``.

    ``None`` stays ``None`` (the caller decides whether the field may be empty). Naive date-times
    and dates given for a date-time are in ``zone`` (the sample contact's). Raises
    :class:`ValueProblem` with what was expected.
    """
    if value is None:
        return None
    if kind is Kind.text:
        if isinstance(value, (bool, list, dict)):
            raise ValueProblem(f"expected text, got {_shown(value)}")
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        return str(value)
    if kind is Kind.integer:
        if isinstance(value, bool):
            raise ValueProblem(f"expected a whole number, got {_shown(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise ValueProblem(f"expected a whole number, got {_shown(value)}")
    if kind is Kind.money:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise ValueProblem(f"expected an amount such as 49.90, got {_shown(value)}")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueProblem(f"expected an amount such as 49.90, got {_shown(value)}") from None
        if not amount.is_finite():
            raise ValueProblem(f"expected an amount such as 49.90, got {_shown(value)}")
        return amount
    if kind is Kind.boolean:
        if isinstance(value, bool):
            return value
        raise ValueProblem(f"expected true or false, got {_shown(value)}")
    if kind is Kind.moment:
        return _moment(value, zone)
    if kind is Kind.day:
        return _day(value)
    if kind is Kind.texts:
        if not isinstance(value, list):
            raise ValueProblem(f"expected a list of texts, got {_shown(value)}")
        return [coerce(Kind.text, item, zone) for item in value]
    if kind is Kind.items:
        if not isinstance(value, list):
            raise ValueProblem(f"expected a list, got {_shown(value)}")
        return [as_json(item) for item in value]
    if kind is Kind.data:
        if not isinstance(value, dict):
            raise ValueProblem(f"expected a mapping of keys, got {_shown(value)}")
        return {str(key): as_json(item) for key, item in value.items()}
    raise ValueProblem(f"{kind} is not a plain value")  # pragma: no cover — records are walked


def as_json(value: Any) -> Any:
    """Free-form data as the store keeps it (JSON): dates and date-times become ISO text."""
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def _moment(value: Any, zone: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), zone)
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    raise ValueProblem(f"expected a date and time such as 2026-12-14T10:00:00+02:00, got {_shown(value)}")


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueProblem(f"expected a date such as 2026-12-24, got {_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)[:60]


_EXAMPLE_TEXT = {"currency": "EUR", "country": "EE", "shipping_country": "EE", "locale": "en"}


def example_record(spec: RecordSpec, now: datetime) -> dict[str, Any]:
    """A record with every field set to a value of its kind (for evaluating with a name present)."""
    values: dict[str, Any] = {}
    for item in spec.fields:
        kind = item.kind
        if kind is Kind.text:
            values[item.name] = _EXAMPLE_TEXT.get(item.name, item.name)
        elif kind is Kind.integer:
            values[item.name] = 1
        elif kind is Kind.money:
            values[item.name] = Decimal("10.00")
        elif kind is Kind.boolean:
            values[item.name] = False
        elif kind is Kind.moment:
            values[item.name] = now
        elif kind is Kind.day:
            values[item.name] = now.date()
        elif kind in (Kind.texts, Kind.items):
            values[item.name] = []
        elif kind is Kind.data:
            values[item.name] = {}
        elif item.record is not None:
            values[item.name] = example_record(item.record, now)
    return values


def did_you_mean(name: str, candidates: tuple[str, ...] | list[str]) -> str:
    """``"; did you mean 'first_name'?"`` or ``""``."""
    hint = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def suggest_attribute(name: str) -> str:
    """A did-you-mean for an attribute name no record has, from every record's fields."""
    fields = sorted({spec.name for record in (*RECORDS.values(), SUPPORT) for spec in record.fields})
    return "" if name in fields else did_you_mean(name, fields)


# ---------------------------------------------------------------------------------------------
# Attribute names in a parsed template or expression


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """``contact.frist_name`` where contact has no ``frist_name``: at ``lineno`` of the parsed source."""

    lineno: int
    path: str  # "contact.frist_name"
    attribute: str
    record: RecordSpec

    @property
    def message(self) -> str:
        shown = ", ".join(self.record.names)
        return (
            f"{self.path}: {self.record.name} has no attribute '{self.attribute}'"
            f"{did_you_mean(self.attribute, self.record.names)} ({self.record.name} has: {shown})"
        )


def unknown_attributes(tree: nodes.Node) -> list[UnknownAttribute]:
    """Every ``NAME.attr`` (or ``NAME['attr']``) chain on a context record that names no field.

    Names the template assigns itself (``{% set contact = … %}``, loop variables) are not the
    context's and are left alone; so are attributes of free-form data and of plain values
    (``contact.first_name.upper()`` is a method of text).
    """
    assigned = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    found: list[UnknownAttribute] = []
    seen: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in seen:
            continue
        chain = _chain(node)
        for inner in _inner_nodes(node):
            seen.add(id(inner))
        if not chain:
            continue
        root = _root_name(node)
        if root is None or root in assigned or root not in RECORDS:
            continue
        record: RecordSpec | None = RECORDS[root]
        path = root
        for inner, name in reversed(chain):
            if record is None:
                break
            path = f"{path}.{name}"
            spec = record.by_name.get(name)
            if spec is None:
                found.append(UnknownAttribute(inner.lineno, path, name, record))
                break
            record = spec.record if spec.kind is Kind.record else None
    return found


def _chain(node: nodes.Node) -> list[tuple[nodes.Node, str]]:
    """The names of an access chain, outermost first (``a.b.c`` → c, b); empty when a part is computed."""
    found: list[tuple[nodes.Node, str]] = []
    current: nodes.Node = node
    while isinstance(current, (nodes.Getattr, nodes.Getitem)):
        if isinstance(current, nodes.Getattr):
            found.append((current, current.attr))
        elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
            found.append((current, current.arg.value))
        else:
            return []  # ``contact[key]``: nothing to check statically
        current = current.node
    return found


def _inner_nodes(node: nodes.Node) -> Iterator[nodes.Node]:
    current: nodes.Node = node
    while isinstance(current, (nodes.Getattr, nodes.Getitem)):
        yield current
        current = current.node


def _root_name(node: nodes.Node) -> str | None:
    current: nodes.Node = node
    while isinstance(current, (nodes.Getattr, nodes.Getitem)):
        current = current.node
    return current.name if isinstance(current, nodes.Name) and current.ctx == "load" else None


__all__ = [
    "ALWAYS",
    "CONTEXT",
    "CONTEXT_NAMES",
    "FUNCTIONS",
    "MESSAGE_NAMES",
    "OPTIONAL",
    "RECORDS",
    "SAMPLE_ONLY",
    "FieldSpec",
    "Kind",
    "RecordSpec",
    "UnknownAttribute",
    "ValueProblem",
    "as_json",
    "coerce",
    "did_you_mean",
    "example_record",
    "suggest_attribute",
    "unknown_attributes",
]
