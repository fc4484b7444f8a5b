"""Which time zone a message uses for a contact: decided here, once.

A contact's own IANA zone when the store has one. Imports and the events API often leave it
empty, and sending at 09:00 UTC "your time" is five hours wrong in New York, so a contact without
one gets, in this order (DESIGN "Round 2 contracts"):

1. the zone of their shipping cutoff row, where the message's date comes from a cutoff (the
   carrier's deadline is stated in that zone, so "order by 17:00" reads right);
2. their country's principal zone, from the tz database's ``zone.tab`` (the ``tzdata`` package:
   the first zone listed for a country is its most populous one — America/New_York for US,
   Europe/Bucharest for RO, Europe/Tallinn for EE);
3. ``TIDINGS_TIMEZONE``.

The planner resolves it per group of contacts that share (zone, country, method) and writes it
into the outbox row's facts; send times, quiet hours and the templates' date filters all read it
from there. ``contact.timezone`` in a template is the zone used and ``contact.timezone_source``
says where it came from (``contact``, ``cutoff``, ``country`` or ``default``; a broadcast post,
which has no recipient, uses its campaign's zone: ``campaign``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ZoneSource = Literal["contact", "cutoff", "country", "default", "campaign"]


@dataclass(frozen=True, slots=True)
class ResolvedZone:
    """A zone and where it came from."""

    zone: ZoneInfo
    source: ZoneSource

    @property
    def name(self) -> str:
        return self.zone.key


def known_zone(name: str | None) -> ZoneInfo | None:
    """The zone named ``name``, or None when it is empty or not an IANA name."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=1)
def _principal_zones() -> dict[str, str]:
    """Country code → the first zone ``zone.tab`` lists for it (its most populous)."""
    table = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for line in table.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3:
            found.setdefault(parts[0].upper(), parts[2])
    return found


def country_zone(country: str | None) -> ZoneInfo | None:
    """The principal zone of an ISO 3166 country, or None for an unknown or missing one."""
    if not country:
        return None
    return known_zone(_principal_zones().get(country.strip().upper()))


def resolve_zone(
    stored: str | None, country: str | None, *, cutoff_zone: ZoneInfo | None, default: ZoneInfo
) -> ResolvedZone:
    """The zone a message to this contact uses (see the module docstring for the order)."""
    own = known_zone(stored)
    if own is not None:
        return ResolvedZone(own, "contact")
    if cutoff_zone is not None:
        return ResolvedZone(cutoff_zone, "cutoff")
    by_country = country_zone(country)
    if by_country is not None:
        return ResolvedZone(by_country, "country")
    return ResolvedZone(default, "default")


__all__ = ["ResolvedZone", "ZoneSource", "country_zone", "known_zone", "resolve_zone"]
