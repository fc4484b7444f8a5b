"""Named dates, per-contact shipping cutoffs and public holidays."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from workspace_support import make_workspace

from engine.workspace.loader import load_workspace
from engine.workspace.schedules import Schedules, is_public_holiday


@pytest.fixture
def schedules(tmp_path: Path) -> Schedules:
    result = load_workspace(make_workspace(tmp_path / "shop"))
    assert result.problems == []
    return result.workspace.schedules


def test_contact_gets_the_row_of_their_own_method(schedules: Schedules) -> None:
    cutoff = schedules.shipping_cutoff("EE", "express")
    assert cutoff is not None
    assert (cutoff.carrier, cutoff.method) == ("DPD", "express")
    assert cutoff.order_by == datetime(2026, 12, 21, 12, 0, tzinfo=ZoneInfo("Europe/Tallinn"))
    assert cutoff.deliver_before == date(2026, 12, 24)


def test_contact_without_a_method_gets_the_default_methods_row(schedules: Schedules) -> None:
    cutoff = schedules.shipping_cutoff("ee", None)
    assert cutoff is not None
    assert (cutoff.carrier, cutoff.date) == ("Omniva", date(2026, 12, 18))


def test_unknown_method_falls_back_to_the_default_method(schedules: Schedules) -> None:
    cutoff = schedules.shipping_cutoff("EE", "pigeon")
    assert cutoff is not None and cutoff.method == "standard"


def test_country_without_the_default_method_row_uses_only_its_own_rows(schedules: Schedules) -> None:
    assert schedules.shipping_cutoff("RO", "standard") is None
    cutoff = schedules.shipping_cutoff("RO", "express")
    assert cutoff is not None and cutoff.zone == ZoneInfo("Europe/Bucharest")


def test_country_without_any_row_is_excluded(schedules: Schedules) -> None:
    assert schedules.shipping_cutoff("US", "standard") is None
    assert schedules.shipping_cutoff(None, "standard") is None


def test_all_cutoff_rows_are_listed_for_the_planner(schedules: Schedules) -> None:
    assert [(c.country, c.method) for c in schedules.cutoff_rows()] == [
        ("EE", "standard"),
        ("EE", "express"),
        ("RO", "express"),
    ]


def test_yearly_dates_come_back_every_year_and_fixed_dates_once(schedules: Schedules) -> None:
    assert schedules.named_date("christmas", 2027) == date(2027, 12, 25)
    assert schedules.named_date("january_return", 2027) == date(2027, 1, 4)
    assert schedules.named_date("january_return", 2028) is None
    assert schedules.occurrences("christmas", date(2026, 1, 1), date(2027, 12, 31)) == [
        date(2026, 12, 25),
        date(2027, 12, 25),
    ]
    assert "shipping_cutoff" in schedules.date_names()


@pytest.mark.parametrize(
    ("country", "day", "expected"),
    [
        ("EE", date(2026, 12, 24), True),  # Jõululaupäev
        ("RO", date(2026, 12, 1), True),  # Ziua Națională
        ("US", date(2026, 12, 25), True),
        ("EE", date(2026, 12, 19), False),  # a Saturday: weekends are not holidays
        ("RO", date(2026, 12, 18), False),
        ("XX", date(2026, 12, 25), False),
        (None, date(2026, 12, 25), False),
    ],
)
def test_public_holidays_come_from_the_holidays_package(
    country: str | None, day: date, expected: bool
) -> None:
    assert is_public_holiday(country, day) is expected
