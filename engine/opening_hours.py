"""The shop's support hours, written once in a small grammar and shown in every locale.

``TIDINGS_SHOP__SUPPORT_HOURS="Mon-Fri 09:00-17:00, Sat 10:00-14:00 Europe/Tallinn"``: groups of
a weekday or a weekday range and a time range, separated by commas or semicolons, then the IANA
zone the hours are kept in (required: a shop selling in three zones must say which one it means).
English weekday abbreviations are the only day names accepted, whatever the shop's language, so
the setting means the same thing on every machine.

Why a grammar and not free text: one free-text string can only be written in one language, and
every email shows these hours in the recipient's. Parsed, the same hours come out as
"Monday–Friday, 09:00 – 17:00" or "luni–vineri, 09:00–17:00" or "esmaspäev–reede, 09:00–17:00",
day names and time ranges from CLDR (Babel), so nothing is translated by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXAMPLE = "Mon-Fri 09:00-17:00, Sat 10:00-14:00 Europe/Tallinn"
_GROUP = re.compile(
    r"^(?P<first>[A-Za-z]{3})(?:\s*[-–]\s*(?P<last>[A-Za-z]{3}))?\s+"
    r"(?P<open>\d{1,2}:\d{2})\s*[-–]\s*(?P<close>\d{1,2}:\d{2})$"
)


class InvalidHours(ValueError):
    """The hours do not follow the grammar; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class HoursGroup:
    """Days ``first``..``last`` (0 = Monday, both included), open from ``opens`` to ``closes``."""

    first: int
    last: int
    opens: time
    closes: time


@dataclass(frozen=True, slots=True)
class OpeningHours:
    groups: tuple[HoursGroup, ...]
    zone: str

    def __str__(self) -> str:
        parts = []
        for group in self.groups:
            days = DAYS[group.first].title()
            if group.last != group.first:
                days += "-" + DAYS[group.last].title()
            parts.append(f"{days} {group.opens:%H:%M}-{group.closes:%H:%M}")
        return f"{', '.join(parts)} {self.zone}"


def _day(name: str, text: str) -> int:
    try:
        return DAYS.index(name.lower())
    except ValueError:
        raise InvalidHours(f"unknown weekday {name!r} in {text!r} (use Mon, Tue … Sun)") from None


def _time(value: str, text: str) -> time:
    hours, minutes = (int(part) for part in value.split(":"))
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise InvalidHours(f"{value!r} is not a time of day in {text!r}")
    return time(hours, minutes)


@lru_cache(maxsize=32)
def parse_hours(text: str) -> OpeningHours:
    """``Mon-Fri 09:00-17:00, Sat 10:00-14:00 Europe/Tallinn`` → :class:`OpeningHours`."""
    stripped = " ".join(text.split())
    head, _, zone = stripped.rpartition(" ")
    if not head or ("/" not in zone and zone != "UTC"):
        raise InvalidHours(f"expected weekdays, hours and a time zone, e.g. {EXAMPLE!r}; got {text!r}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidHours(f"unknown IANA time zone {zone!r} in {text!r}") from None
    groups = []
    for part in re.split(r"[,;]", head):
        match = _GROUP.match(part.strip())
        if match is None:
            raise InvalidHours(f"cannot read {part.strip()!r}: expected days and hours as in {EXAMPLE!r}")
        first = _day(match["first"], text)
        last = _day(match["last"], text) if match["last"] else first
        if last < first:
            raise InvalidHours(f"{part.strip()!r}: the days run backwards (write Mon-Fri, not Fri-Mon)")
        opens, closes = _time(match["open"], text), _time(match["close"], text)
        if closes <= opens:
            raise InvalidHours(f"{part.strip()!r}: closes before it opens")
        groups.append(HoursGroup(first, last, opens, closes))
    return OpeningHours(tuple(groups), zone)
