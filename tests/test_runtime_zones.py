"""A contact without a time zone gets a real one: their cutoff's, their country's, else the shop's."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from engine.runtime.zones import country_zone, resolve_zone

UTC = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("EE", "Europe/Tallinn"),
        ("RO", "Europe/Bucharest"),
        ("US", "America/New_York"),
        ("ee", "Europe/Tallinn"),
    ],
)
def test_a_country_resolves_to_its_principal_zone_from_the_tz_database(country: str, zone: str) -> None:
    assert country_zone(country) == ZoneInfo(zone)


def test_an_unknown_or_missing_country_has_no_zone() -> None:
    assert country_zone("XX") is None
    assert country_zone(None) is None


def test_the_contacts_own_zone_wins() -> None:
    found = resolve_zone("Europe/Bucharest", "US", cutoff_zone=ZoneInfo("America/New_York"), default=UTC)
    assert (found.name, found.source) == ("Europe/Bucharest", "contact")


def test_without_a_zone_the_cutoff_rows_zone_comes_first() -> None:
    found = resolve_zone(None, "US", cutoff_zone=ZoneInfo("America/Chicago"), default=UTC)
    assert (found.name, found.source) == ("America/Chicago", "cutoff")


def test_without_a_zone_or_cutoff_the_country_decides() -> None:
    found = resolve_zone("", "RO", cutoff_zone=None, default=UTC)
    assert (found.name, found.source) == ("Europe/Bucharest", "country")


def test_an_invalid_stored_zone_and_no_country_fall_back_to_the_shops_zone() -> None:
    found = resolve_zone("Mars/Olympus", None, cutoff_zone=None, default=ZoneInfo("Europe/Tallinn"))
    assert (found.name, found.source) == ("Europe/Tallinn", "default")
