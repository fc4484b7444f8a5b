"""Durations accept DESIGN.md's grammar and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.workspace.durations import Duration, Offset, parse_duration


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_each_unit_is_accepted(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["3 days", "P3D", "1.5d", "7", "7D", "-7d", "d", "", "7 d", "1y"])
def test_anything_outside_the_grammar_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="30m, 2h, 7d or 2w"):
        Duration.parse(text)


def test_a_bare_number_is_refused_with_a_hint_about_units() -> None:
    with pytest.raises(ValueError, match="a number needs a unit"):
        Duration.parse(7)


def test_calendar_offsets_are_signed_whole_days() -> None:
    assert Offset.parse("-7d").whole_days == -7
    assert Offset.parse("1w").whole_days == 7
    assert str(Offset.parse("-2d")) == "-2d"
