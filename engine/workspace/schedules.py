"""Calendars in schedules/*.yaml: named dates, date ranges, shipping cutoffs, labels; public holidays.

``dates`` are global (``christmas: 12-25`` every year, ``january_return: 2027-01-04`` once).
``shipping_cutoff`` is the one per-contact date: it resolves from the contact's country and
preferred shipping method to a row of ``shipping_cutoffs`` — their method's row, else the
default method's row for their country, else none (the contact is excluded from calendar
triggers on it, and ``plan`` says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import holidays as holidays_lib
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from engine.workspace.labels import Labels, LabelsSection
from engine.workspace.values import DateValue, Name, StrictModel, ZoneName

SHIPPING_CUTOFF = "shipping_cutoff"
PER_CONTACT_DATES: tuple[str, ...] = (SHIPPING_CUTOFF,)
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class MonthDay:
    """A date that comes back every year (``12-25``)."""

    month: int
    day: int

    def in_year(self, year: int) -> date | None:
        """This day in ``year``; ``None`` for 02-29 in a year without it."""
        try:
            return date(year, self.month, self.day)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.month:02d}-{self.day:02d}"


def _named_date(value: object) -> date | MonthDay:
    if isinstance(value, datetime):
        raise PydanticCustomError("date", "expected a date (YYYY-MM-DD or MM-DD) without a time")
    if isinstance(value, date | MonthDay):
        return value
    if isinstance(value, str):
        text = value.strip()
        match = _MONTH_DAY.match(text)
        if match:
            candidate = MonthDay(int(match[1]), int(match[2]))
            if candidate.in_year(2028) is not None:  # a leap year: 02-29 is a valid yearly date
                return candidate
        elif _ISO_DATE.match(text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
    raise PydanticCustomError(
        "date", "expected a date YYYY-MM-DD or a yearly MM-DD (e.g. 12-25), got {got}", {"got": repr(value)}
    )


class _NamedDateSchema:
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _named_date,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.isoformat() if isinstance(v, date) else str(v)
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": r"^(\d{4}-)?\d{2}-\d{2}$",
            "description": "YYYY-MM-DD, or MM-DD yearly",
        }


NamedDate = Annotated[date | MonthDay, _NamedDateSchema]

_ORDER_BY = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")


def _order_by(value: object) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is None and value.second == 0:
        return value
    if isinstance(value, str) and _ORDER_BY.match(value.strip()):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PydanticCustomError(
        "order_by",
        'expected a local date and time "YYYY-MM-DD HH:MM" (in the row\'s timezone), got {got}',
        {"got": repr(value)},
    )


OrderBy = Annotated[
    datetime,
    BeforeValidator(_order_by),
    WithJsonSchema({"type": "string", "pattern": _ORDER_BY.pattern, "description": "YYYY-MM-DD HH:MM"}),
]


def _country(value: object) -> str:
    if isinstance(value, str) and re.match(r"^[A-Za-z]{2}$", value.strip()):
        return value.strip().upper()
    raise PydanticCustomError(
        "country", "expected a two-letter ISO country code such as EE, got {got}", {"got": repr(value)}
    )


Country = Annotated[
    str,
    BeforeValidator(_country),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 3166 country code"}),
]


def _date_pair(value: object) -> tuple[date, date]:
    if isinstance(value, list | tuple) and len(value) == 2:
        start: date | MonthDay | None
        end: date | MonthDay | None
        try:
            start, end = (_named_date(v) for v in value)
        except PydanticCustomError:
            start = end = None
        if isinstance(start, date) and isinstance(end, date):
            if start > end:
                raise PydanticCustomError(
                    "range_order",
                    "the range starts {start} after it ends {end}",
                    {"start": str(start), "end": str(end)},
                )
            return start, end
    raise PydanticCustomError(
        "date_range",
        "expected a [from, to] pair of dates such as [2027-01-02, 2027-01-08], got {got}",
        {"got": repr(value)},
    )


DateRange = Annotated[
    tuple[date, date],
    BeforeValidator(_date_pair),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
            "minItems": 2,
            "maxItems": 2,
        }
    ),
]


class CutoffRow(StrictModel):
    """The last moment to order (in ``timezone``) for delivery before ``deliver_before``."""

    country: Country
    method: Name
    carrier: Annotated[str, Field(min_length=1)]
    order_by: OrderBy
    timezone: ZoneName


class DefaultMethod(StrictModel):
    method: Name


class ShippingCutoffs(StrictModel):
    deliver_before: DateValue
    cutoffs: list[CutoffRow] = Field(min_length=1)
    default: DefaultMethod


class ScheduleFile(StrictModel):
    """One schedules/*.yaml file."""

    model_config = ConfigDict(title="Tidings schedule")

    dates: dict[Name, NamedDate] = Field(default_factory=dict)
    ranges: dict[Name, DateRange] = Field(default_factory=dict)
    shipping_cutoffs: ShippingCutoffs | None = None
    labels: LabelsSection = Field(
        default_factory=dict,
        description="per-locale texts for codes the shop sends: labels: {KIND: {CODE: {LOCALE: text}}}",
    )


@dataclass(frozen=True, slots=True)
class Cutoff:
    """A resolved shipping cutoff, as templates see it (``cutoff.order_by`` …)."""

    country: str
    method: str
    carrier: str
    order_by: datetime  # aware, in the cutoff's zone
    deliver_before: date

    @property
    def zone(self) -> ZoneInfo:
        assert isinstance(self.order_by.tzinfo, ZoneInfo)
        return self.order_by.tzinfo

    @property
    def date(self) -> date:
        """The cutoff's calendar date in its own zone: calendar offsets count from it."""
        return self.order_by.date()

    def as_context(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "method": self.method,
            "carrier": self.carrier,
            "order_by": self.order_by,
            "deliver_before": self.deliver_before,
        }


@dataclass
class Schedules:
    """Every schedules/*.yaml file of a workspace, merged (names are unique across files)."""

    dates: dict[str, date | MonthDay] = field(default_factory=dict)
    ranges: dict[str, tuple[date, date]] = field(default_factory=dict)
    shipping: ShippingCutoffs | None = None
    labels: Labels = field(default_factory=Labels)

    def date_names(self) -> list[str]:
        """Names a calendar trigger may use: the global dates, plus ``shipping_cutoff`` when defined."""
        names = list(self.dates)
        if self.shipping is not None:
            names.append(SHIPPING_CUTOFF)
        return names

    @staticmethod
    def is_per_contact(name: str) -> bool:
        return name in PER_CONTACT_DATES

    def named_date(self, name: str, year: int) -> date | None:
        """A global named date in ``year``: yearly dates every year, fixed dates only in their own year."""
        value = self.dates.get(name)
        if value is None:
            if name in PER_CONTACT_DATES:
                raise ValueError(f"{name} is per contact: use shipping_cutoff(country, method)")
            raise KeyError(name)
        if isinstance(value, MonthDay):
            return value.in_year(year)
        return value if value.year == year else None

    def occurrences(self, name: str, start: date, end: date) -> list[date]:
        """Every date of a global named date between ``start`` and ``end`` (both included)."""
        found = [self.named_date(name, year) for year in range(start.year, end.year + 1)]
        return [d for d in found if d is not None and start <= d <= end]

    def date_range(self, name: str) -> tuple[date, date]:
        return self.ranges[name]

    @property
    def default_method(self) -> str | None:
        return self.shipping.default.method if self.shipping is not None else None

    def cutoff_rows(self) -> list[Cutoff]:
        """Every cutoff row, resolved (the planner groups contacts by (country, method) against these)."""
        if self.shipping is None:
            return []
        return [_resolve(row, self.shipping.deliver_before) for row in self.shipping.cutoffs]

    def shipping_cutoff(self, country: str | None, preferred_method: str | None = None) -> Cutoff | None:
        """The contact's cutoff: their method's row for their country, else the default method's row,
        else ``None`` (no row for their country: excluded from triggers on ``shipping_cutoff``)."""
        if self.shipping is None or not country:
            return None
        rows = {(row.country, row.method): row for row in self.shipping.cutoffs}
        country = country.upper()
        for method in (preferred_method, self.shipping.default.method):
            if method and (country, method) in rows:
                return _resolve(rows[(country, method)], self.shipping.deliver_before)
        return None


def _resolve(row: CutoffRow, deliver_before: date) -> Cutoff:
    return Cutoff(
        country=row.country,
        method=row.method,
        carrier=row.carrier,
        order_by=row.order_by.replace(tzinfo=ZoneInfo(row.timezone)),
        deliver_before=deliver_before,
    )


@lru_cache(maxsize=256)
def _country_holidays(country: str, year: int) -> holidays_lib.HolidayBase | None:
    try:
        return holidays_lib.country_holidays(country.upper(), years=year)
    except (NotImplementedError, KeyError):
        return None


def is_public_holiday(country: str | None, day: date) -> bool:
    """Whether ``day`` is a public holiday in ``country`` (``holidays`` package). Weekends are not
    holidays; an unknown or missing country has none."""
    if not country:
        return False
    calendar = _country_holidays(country, day.year)
    return calendar is not None and day in calendar


def holiday_name(country: str | None, day: date) -> str | None:
    """The holiday's name (for ``plan`` output), or ``None``."""
    if not country:
        return None
    calendar = _country_holidays(country, day.year)
    if calendar is None:
        return None
    name = calendar.get(day)
    return str(name) if name else None
