"""Audience filters: a typed tree that ``engine.audience`` compiles to SQL.

A ``where`` list is ANDed. Each item is exactly one condition:

=====================================  =====================================================
YAML                                   model
=====================================  =====================================================
``consent: email``                     :class:`ConsentFilter` (an open consent row, not suppressed)
``consent: {email: existing_customer}`` :class:`ConsentFilter`, the EU soft opt-in: express consent,
                                       or a customer (a previous purchase) who never opted out
``tag: vip``                           :class:`TagFilter` (``vip`` in ``contact.tags``)
``country: EE``                        :class:`FieldFilter` ``[FieldCondition("eq", "EE")]``
``country: [EE, RO]``                  :class:`FieldFilter` ``[FieldCondition("in", [...])]``
``country: null``                      :class:`FieldFilter` ``[FieldCondition("exists", False)]``
``total_spent: {gte: 100, lt: 500}``   :class:`FieldFilter` with two conditions (ANDed)
``order: {placed_within: …, …}``       :class:`OrderFilter` (the contact has an order matching all)
``gift_card: {received: …, …}``        :class:`GiftCardFilter` (as recipient)
``event: {type: T, within: …}``        :class:`EventFilter` (the contact has such an event)
``clicked: {within: 90d}``             :class:`ClickedFilter` (clicked a link in a message)
``opened: {within: 90d}``              :class:`OpenedFilter` (a person opened one; machine opens —
                                       Apple Mail Privacy Protection's prefetch — never count)
``engaged: {within: 120d}``            :class:`EngagedFilter` (clicked, or ordered, in the window)
``any: [ … ]``                         :class:`AnyFilter` (at least one holds)
``not: [ … ]``                         :class:`NotFilter` (none holds)
=====================================  =====================================================

Time windows (:class:`TimeWindow`) are a duration counted back from the occurrence
(``365d``) or a ``[from, to]`` pair of dates, both days included.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Tag,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from engine.workspace.durations import UNSIGNED_PATTERN, Duration
from engine.workspace.values import EventType, StrictModel

# The contact columns a filter may name (DESIGN.md "Store"), by kind; ``attributes.KEY`` for custom fields.
TEXT_FIELDS = ("email", "first_name", "last_name", "locale", "country", "timezone", "x_handle")
NUMBER_FIELDS = ("id", "orders_count", "total_spent")
TIME_FIELDS = ("first_seen_at", "last_order_at", "created_at")
CONTACT_FIELDS: tuple[str, ...] = ("id", *TEXT_FIELDS, "orders_count", "total_spent", *TIME_FIELDS)
ATTRIBUTE_PREFIX = "attributes."
_ATTRIBUTE = re.compile(r"^attributes\.[A-Za-z0-9_][A-Za-z0-9_-]*$")
FILTER_KEYWORDS = (
    "consent",
    "tag",
    "order",
    "gift_card",
    "event",
    "clicked",
    "opened",
    "engaged",
    "any",
    "not",
)
ORDER_STATUSES = ("placed", "shipped", "delivered", "returned", "problem", "cancelled")
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


# ---------------------------------------------------------------------------------------------
# Time windows


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Either ``last`` (a duration back from the occurrence) or ``start``..``end`` (dates, inclusive)."""

    last: Duration | None = None
    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(cls, value: object) -> TimeWindow:
        if isinstance(value, TimeWindow):
            return value
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                return cls(last=Duration.parse(value))
            except ValueError:
                pass
        elif isinstance(value, list | tuple) and len(value) == 2:
            start, end = (_as_date(v) for v in value)
            if start is not None and end is not None:
                if start > end:
                    raise ValueError(f"the window starts {start} after it ends {end}")
                return cls(start=start, end=end)
        raise ValueError(
            f"expected a duration back from the occurrence (e.g. 365d) or a [from, to] pair of dates "
            f"(e.g. [2026-11-01, 2026-12-31]), got {value!r}"
        )

    def as_json(self) -> str | list[str]:
        if self.last is not None:
            return str(self.last)
        assert self.start is not None and self.end is not None
        return [self.start.isoformat(), self.end.isoformat()]

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: object) -> TimeWindow:
            try:
                return cls.parse(value)
            except ValueError as exc:
                raise PydanticCustomError("time_window", str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda w: w.as_json())
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string", "pattern": UNSIGNED_PATTERN},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": _ISO_DATE},
                    "minItems": 2,
                    "maxItems": 2,
                },
            ],
            "description": "a duration back from the occurrence (365d) or [from, to] dates",
        }


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.match(_ISO_DATE, value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Keyword filters


ConsentChannel = Literal["email", "x"]
LegalBasis = Literal["consent", "existing_customer"]


class ConsentFilter(StrictModel):
    """Who may receive marketing on a channel, and on which legal basis.

    ``consent: email`` — express prior consent (an open consent row; Romania and Estonia require it
    for marketing email). ``consent: {email: existing_customer}`` — the EU soft opt-in (ePrivacy
    Art. 13(2)): a contact who bought from the shop, for similar products, as long as they were
    offered an opt-out at collection and in every message and never took it (no withdrawn consent
    row, no unsubscribe); express consent qualifies too. Either way a suppressed address is out.
    """

    consent: ConsentChannel | dict[ConsentChannel, LegalBasis]

    @model_validator(mode="after")
    def _one_channel(self) -> ConsentFilter:
        if isinstance(self.consent, dict) and len(self.consent) != 1:
            raise PydanticCustomError(
                "consent_basis",
                "consent: {CHANNEL: BASIS} names one channel, e.g. {email: existing_customer}",
            )
        return self

    @property
    def channel(self) -> str:
        return self.consent if isinstance(self.consent, str) else next(iter(self.consent))

    @property
    def basis(self) -> str:
        return "consent" if isinstance(self.consent, str) else next(iter(self.consent.values()))


class TagFilter(StrictModel):
    tag: Annotated[str, Field(min_length=1)]


OrderStatusName = Literal["placed", "shipped", "delivered", "returned", "problem", "cancelled"]


class OrderCriteria(StrictModel):
    """All given criteria hold for one and the same order; ``{}`` means any order at all."""

    placed_within: TimeWindow | None = None
    status: OrderStatusName | list[OrderStatusName] | None = None
    method: str | None = None
    is_gift: bool | None = None
    count_gte: int | None = Field(default=None, ge=1, description="at least this many such orders")

    @property
    def statuses(self) -> list[str]:
        if self.status is None:
            return []
        return [self.status] if isinstance(self.status, str) else list(self.status)


class OrderFilter(StrictModel):
    order: OrderCriteria


class GiftCardCriteria(StrictModel):
    """A gift card the contact received: when (``true`` = ever) and with what balance left."""

    received: TimeWindow | bool | None = None
    balance_gt: Decimal | None = Field(default=None, ge=0)


class GiftCardFilter(StrictModel):
    gift_card: GiftCardCriteria


class EventCriteria(StrictModel):
    type: EventType
    within: TimeWindow | None = None


class EventFilter(StrictModel):
    event: EventCriteria


class EngagementCriteria(StrictModel):
    """When the contact engaged: a duration back from the occurrence or a ``[from, to]`` pair of dates."""

    within: TimeWindow


class ClickedFilter(StrictModel):
    """The contact clicked a link in one of our messages in the window."""

    clicked: EngagementCriteria


class OpenedFilter(StrictModel):
    """A person opened one of our messages in the window (machine opens never count)."""

    opened: EngagementCriteria


class EngagedFilter(StrictModel):
    """The contact clicked a link or placed an order in the window (a sunset rule keeps the others out)."""

    engaged: EngagementCriteria


class AnyFilter(StrictModel):
    any: list[Filter] = Field(min_length=1)


class NotFilter(StrictModel):
    negated: list[Filter] = Field(alias="not", min_length=1)


# ---------------------------------------------------------------------------------------------
# Field filters: ``FIELD: value`` or ``FIELD: {op: value, …}``

FieldOp = Literal["eq", "in", "gt", "gte", "lt", "lte", "within", "before", "after", "exists"]
FIELD_OPS: tuple[str, ...] = ("in", "gt", "gte", "lt", "lte", "within", "before", "after", "exists")
Scalar = str | int | float | bool | date | datetime | Decimal


@dataclass(frozen=True, slots=True)
class FieldCondition:
    """One comparison. ``value`` types by op: eq → scalar; in → list of scalars; gt/gte/lt/lte → number or
    date/datetime; within → :class:`TimeWindow`; before/after → date/datetime or a :class:`Duration` back
    from the occurrence; exists → bool."""

    op: FieldOp
    value: Any


def _field_filter_schema(schema: dict[str, Any]) -> None:
    scalar = {"type": ["string", "number", "boolean", "null"]}
    condition = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "in": {"type": "array", "items": scalar, "minItems": 1},
            **{op: {"type": ["number", "string"]} for op in ("gt", "gte", "lt", "lte", "before", "after")},
            "within": TimeWindow.__get_pydantic_json_schema__(core_schema.any_schema(), None),  # type: ignore[arg-type]
            "exists": {"type": "boolean"},
        },
    }
    value = {"anyOf": [scalar, {"type": "array", "items": scalar, "minItems": 1}, condition]}
    schema.clear()
    schema.update(
        {
            "type": "object",
            "description": "FIELD: value or FIELD: {in|gt|gte|lt|lte|within|before|after|exists: …}",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {
                "pattern": "^(" + "|".join(CONTACT_FIELDS) + r"|attributes\.[A-Za-z0-9_][A-Za-z0-9_-]*)$"
            },
            "additionalProperties": value,
        }
    )


class FieldFilter(BaseModel):
    """A condition on a contact column or a custom attribute; several conditions are ANDed."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_field_filter_schema)

    field: str
    conditions: tuple[FieldCondition, ...]

    kind: ClassVar[str] = "field"

    @property
    def is_attribute(self) -> bool:
        return self.field.startswith(ATTRIBUTE_PREFIX)

    @property
    def attribute(self) -> str | None:
        return self.field[len(ATTRIBUTE_PREFIX) :] if self.is_attribute else None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: object) -> object:
        if isinstance(value, dict) and set(value) == {"field", "conditions"}:
            return value  # already normalised (re-validation)
        if not isinstance(value, dict) or len(value) != 1:
            raise PydanticCustomError("filter", "expected one condition such as country: EE")
        name, raw = next(iter(value.items()))
        name = str(name)
        if name not in CONTACT_FIELDS and not _ATTRIBUTE.match(name):
            raise PydanticCustomError("filter_field", _unknown_field_message(name))
        return {"field": name, "conditions": _conditions(name, raw)}


def _unknown_field_message(name: str) -> str:
    candidates = (*FILTER_KEYWORDS, *CONTACT_FIELDS, "tags")
    hint = difflib.get_close_matches(name, candidates, n=1)
    if hint == ["tags"]:
        hint = ["tag"]
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    return (
        f"unknown filter or contact field '{name}'{suggestion} "
        f"(expected one of {', '.join(FILTER_KEYWORDS)}, "
        f"a contact field ({', '.join(CONTACT_FIELDS)}) or attributes.KEY)"
    )


def _kind(name: str) -> str:
    if name in TEXT_FIELDS:
        return "text"
    if name in NUMBER_FIELDS:
        return "number"
    if name in TIME_FIELDS:
        return "time"
    return "attribute"


def _conditions(name: str, raw: object) -> tuple[FieldCondition, ...]:
    if raw is None:
        return (FieldCondition("exists", False),)
    if isinstance(raw, list):
        return (FieldCondition("in", [_scalar(name, "in", v) for v in _non_empty(name, raw)]),)
    if not isinstance(raw, dict):
        return (FieldCondition("eq", _scalar(name, "eq", raw)),)
    if not raw:
        raise PydanticCustomError("filter_op", f"{name}: expected at least one of {', '.join(FIELD_OPS)}")
    kind = _kind(name)
    conditions = []
    for op, operand in raw.items():
        op = str(op)
        if op not in FIELD_OPS:
            hint = difflib.get_close_matches(op, FIELD_OPS, n=1)
            suggestion = f"did you mean '{hint[0]}'? " if hint else ""
            raise PydanticCustomError(
                "filter_op",
                f"{name}: unknown comparison '{op}'; {suggestion}expected one of {', '.join(FIELD_OPS)}",
            )
        conditions.append(_condition(name, kind, op, operand))
    return tuple(conditions)


def _condition(name: str, kind: str, op: str, operand: object) -> FieldCondition:
    if op == "exists":
        if not isinstance(operand, bool):
            raise PydanticCustomError("filter_value", f"{name}: exists takes true or false, got {operand!r}")
        return FieldCondition("exists", operand)
    if op == "in":
        if not isinstance(operand, list):
            raise PydanticCustomError("filter_value", f"{name}: in takes a list of values, got {operand!r}")
        return FieldCondition("in", [_scalar(name, "in", v) for v in _non_empty(name, operand)])
    if op == "within":
        if kind not in ("time", "attribute"):
            raise PydanticCustomError(
                "filter_value", f"{name}: within applies to a date-time field, not {name}"
            )
        try:
            return FieldCondition("within", TimeWindow.parse(operand))
        except ValueError as exc:
            raise PydanticCustomError("filter_value", f"{name}: within: {exc}") from None
    if op in ("before", "after"):
        if kind not in ("time", "attribute"):
            raise PydanticCustomError(
                "filter_value", f"{name}: {op} applies to a date-time field, not {name}"
            )
        if isinstance(operand, date):
            return FieldCondition(op, operand)  # type: ignore[arg-type]
        day = _as_date(operand)
        if day is not None:
            return FieldCondition(op, day)  # type: ignore[arg-type]
        try:
            return FieldCondition(op, Duration.parse(operand))  # type: ignore[arg-type]
        except ValueError:
            raise PydanticCustomError(
                "filter_value",
                f"{name}: {op} takes a date (2026-12-27) or a duration back (30d), got {operand!r}",
            ) from None
    # gt / gte / lt / lte
    if kind == "text":
        raise PydanticCustomError("filter_value", f"{name}: {op} compares numbers or dates; {name} is text")
    if isinstance(operand, bool) or not isinstance(operand, int | float | Decimal | date):
        day = _as_date(operand)
        if day is None:
            raise PydanticCustomError(
                "filter_value", f"{name}: {op} takes a number or a date, got {operand!r}"
            )
        operand = day
    return FieldCondition(op, operand)  # type: ignore[arg-type]


def _non_empty(name: str, values: list[Any]) -> list[Any]:
    if not values:
        raise PydanticCustomError("filter_value", f"{name}: the list of values is empty")
    return values


def _scalar(name: str, op: str, value: object) -> Any:
    if isinstance(value, dict | list) or value is None:
        raise PydanticCustomError("filter_value", f"{name}: expected a single value, got {value!r}")
    if name == "country" and isinstance(value, str):
        if not re.match(r"^[A-Za-z]{2}$", value):
            raise PydanticCustomError(
                "filter_value", f"country: expected a two-letter ISO country code such as EE, got {value!r}"
            )
        return value.upper()
    if name == "email" and isinstance(value, str):
        return value.strip().lower()
    return value


# ---------------------------------------------------------------------------------------------
# The union


def _filter_tag(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return _TAG_BY_CLASS.get(type(value))
    if isinstance(value, dict):
        if set(value) == {"field", "conditions"}:
            return "<field>"
        if len(value) == 1:
            key = str(next(iter(value)))
            return f"<{key}>" if key in FILTER_KEYWORDS else "<field>"
    return None


Filter = Annotated[
    Union[  # noqa: UP007
        Annotated[ConsentFilter, Tag("<consent>")],
        Annotated[TagFilter, Tag("<tag>")],
        Annotated[OrderFilter, Tag("<order>")],
        Annotated[GiftCardFilter, Tag("<gift_card>")],
        Annotated[EventFilter, Tag("<event>")],
        Annotated[ClickedFilter, Tag("<clicked>")],
        Annotated[OpenedFilter, Tag("<opened>")],
        Annotated[EngagedFilter, Tag("<engaged>")],
        Annotated[AnyFilter, Tag("<any>")],
        Annotated[NotFilter, Tag("<not>")],
        Annotated[FieldFilter, Tag("<field>")],
    ],
    Discriminator(
        _filter_tag,
        custom_error_type="filter_shape",
        custom_error_message="each where item is one condition, such as consent: email or country: EE",
    ),
]
AnyFilterNode = (
    ConsentFilter
    | TagFilter
    | OrderFilter
    | GiftCardFilter
    | EventFilter
    | ClickedFilter
    | OpenedFilter
    | EngagedFilter
    | AnyFilter
    | NotFilter
    | FieldFilter
)

_TAG_BY_CLASS: dict[type, str] = {
    ConsentFilter: "<consent>",
    TagFilter: "<tag>",
    OrderFilter: "<order>",
    GiftCardFilter: "<gift_card>",
    EventFilter: "<event>",
    ClickedFilter: "<clicked>",
    OpenedFilter: "<opened>",
    EngagedFilter: "<engaged>",
    AnyFilter: "<any>",
    NotFilter: "<not>",
    FieldFilter: "<field>",
}

AnyFilter.model_rebuild()
NotFilter.model_rebuild()
