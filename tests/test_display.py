"""Colours and times as reports show them: distinct per campaign, in the shop's zone."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.display import PALETTE, campaign_colours, local_text, zone_label


def _lab(colour: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB hex colour, for the ΔE*76 distance between two colours."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_every_two_palette_colours_are_plainly_different() -> None:
    closest = min(math.dist(_lab(a), _lab(b)) for a, b in itertools.combinations(PALETTE, 2))
    assert len(PALETTE) == 20 and closest > 25


def test_palette_colours_read_on_white_and_on_dark_pages() -> None:
    assert all(28 <= _lab(colour)[0] <= 82 for colour in PALETTE)


def test_campaign_colours_never_repeat_even_past_the_palette() -> None:
    colours = campaign_colours(f"campaign-{n}" for n in range(60))
    assert len(set(colours.values())) == 60
    assert list(colours.values())[:20] == list(PALETTE)


def test_campaign_colours_follow_the_order_given_and_ignore_repeats() -> None:
    assert campaign_colours(["b", "a", "b"]) == {"b": PALETTE[0], "a": PALETTE[1]}


def test_times_are_shown_in_the_shop_zone_with_the_zone_named() -> None:
    moment = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    assert local_text(moment, ZoneInfo("Europe/Bucharest")) == "Mon 14 Dec 2026 10:00"
    assert zone_label(ZoneInfo("Europe/Bucharest")).startswith("Europe/Bucharest, the shop's time zone")
    with pytest.raises(ValueError, match="aware"):
        local_text(datetime(2026, 12, 14, 8, 0), ZoneInfo("UTC"))
