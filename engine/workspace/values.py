"""Scalar value types shared by every workspace file: names, dates, times of day, zones, event types.

Each one accepts exactly what DESIGN.md shows and says what it expected otherwise; YAML's own
typing is not trusted (``09:00`` is text in YAML 1.2 but a number in 1.1; ``2026-12-01`` is a
date unquoted and text quoted) so both spellings of a valid value are accepted.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError


class StrictModel(BaseModel):
    """Unknown keys are errors; aliases (``if``, ``else``, ``not``) are the YAML spelling."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[
    str,
    Field(pattern=NAME_PATTERN, max_length=100, description="letters, digits, '-', '_' and '.'"),
]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(value: object) -> date:
    if isinstance(value, datetime):
        raise PydanticCustomError(
            "date", "expected a date YYYY-MM-DD without a time, got {got}", {"got": str(value)}
        )
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PydanticCustomError("date", "expected a date YYYY-MM-DD, got {got}", {"got": repr(value)})


DateValue = Annotated[
    date,
    BeforeValidator(_date),
    WithJsonSchema({"type": "string", "pattern": _DATE.pattern, "description": "YYYY-MM-DD"}),
]

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _time_of_day(value: object) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str) and _HHMM.match(value.strip()):
        return time.fromisoformat(value.strip())
    raise PydanticCustomError(
        "time_of_day", 'expected a time of day "HH:MM" (24-hour, quoted), got {got}', {"got": repr(value)}
    )


TimeOfDay = Annotated[
    time,
    BeforeValidator(_time_of_day),
    WithJsonSchema({"type": "string", "pattern": _HHMM.pattern, "description": "HH:MM, 24-hour"}),
]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        from zoneinfo import available_timezones

        hint = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else " (e.g. Europe/Bucharest)"
        raise PydanticCustomError(
            "zone", "unknown IANA time zone {got}{suggestion}", {"got": repr(value), "suggestion": suggestion}
        ) from None
    return value


ZoneName = Annotated[
    str,
    AfterValidator(_zone),
    WithJsonSchema({"type": "string", "description": "an IANA time zone, e.g. Europe/Bucharest"}),
]

# DESIGN.md "Shop event types"; shops may send any custom.* type too.
EVENT_TYPES: tuple[str, ...] = (
    "order.placed",
    "order.shipped",
    "order.delivered",
    "order.problem",
    "return.requested",
    "exchange.requested",
    "exchange.shipped",
    "claim.opened",
    "claim.resolved",
    "gift_card.purchased",
    "gift_card.redeemed",
    "site.first_visit",
)
_CUSTOM_EVENT = re.compile(r"^custom\.[A-Za-z0-9_.-]+$")


def _event_type(value: str) -> str:
    if value in EVENT_TYPES or _CUSTOM_EVENT.match(value):
        return value
    hint = difflib.get_close_matches(value, EVENT_TYPES, n=1)
    suggestion = f"did you mean '{hint[0]}'? " if hint else ""
    raise PydanticCustomError(
        "event_type",
        "unknown event type {got}; {suggestion}expected one of {known} or custom.NAME",
        {"got": repr(value), "suggestion": suggestion, "known": ", ".join(EVENT_TYPES)},
    )


EventType = Annotated[
    str,
    AfterValidator(_event_type),
    WithJsonSchema(
        {
            "type": "string",
            "anyOf": [{"enum": list(EVENT_TYPES)}, {"pattern": _CUSTOM_EVENT.pattern}],
            "description": "a shop event type",
        }
    ),
]


def normalise_locale(locale: str | None) -> str | None:
    """``ro_ro`` / ``RO-ro`` → ``ro-RO``; empty → None."""
    if not locale or not str(locale).strip():
        return None
    parts = str(locale).strip().replace("_", "-").split("-")
    head = parts[0].lower()
    rest = [part.upper() if len(part) == 2 else part for part in parts[1:]]
    return "-".join([head, *rest])


_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _locales(value: object) -> list[str]:
    """``locale: ro`` or ``locale: [ro, et]``: CLDR locales, normalised, each once."""
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, list) or not given:
        raise PydanticCustomError(
            "locales",
            "expected a locale such as ro, or a list such as [ro, et], got {got}",
            {"got": repr(value)},
        )
    from babel import localedata

    found: list[str] = []
    for item in given:
        code = normalise_locale(item) if isinstance(item, str) else None
        if code is None or not _LOCALE.match(code) or not localedata.exists(code.replace("-", "_")):
            raise PydanticCustomError(
                "locale",
                "unknown locale {got}; expected a language code such as ro, et or en-US",
                {"got": repr(item)},
            )
        if code in found:
            raise PydanticCustomError("locale_repeat", "locale {got} is listed twice", {"got": code})
        found.append(code)
    return found


Locales = Annotated[
    list[str],
    BeforeValidator(_locales),
    WithJsonSchema(
        {
            "description": "the language(s) to send in: one locale, or a list (a contact whose language "
            "is in the list gets it, everyone else the first)",
            "anyOf": [
                {"type": "string", "pattern": r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
        }
    ),
]
