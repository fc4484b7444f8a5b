"""How reports show things to people: one colour per campaign, and times in the shop's zone.

Used by the season report, the preview's timeline and outbox, and the public status page,
so a campaign has the same colour and a moment the same wording wherever it appears.

Colours: :data:`PALETTE` is a fixed qualitative palette of 20 colours (Tableau's first nine,
then the colours that lie farthest from those already chosen, picked greedily), each with a
CIELAB lightness between 28 and 82 so that a bar reads on a white and on a dark page. Its
closest pair is ΔE*76 ≈ 27.6 apart (a difference of about 10 is already plain to see side
by side). :func:`campaign_colours` gives campaigns colours in the order they are named and
never gives two the same one: past the palette it walks the hue circle by the golden angle.

Times: stored UTC, shown in ``TIDINGS_TIMEZONE`` with the zone named beside them
(:func:`zone_label`), since "10:00" alone is the question a reader asks about, not the answer.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

PALETTE: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1",
    "#edc948", "#76b7b2", "#9c755f", "#ff9da7", "#8338ec",
    "#b5179e", "#3a86ff", "#808000", "#6a3d9a", "#ff006e",
    "#fb5607", "#606c38", "#b15928", "#f032e6", "#006d77",
)  # fmt: skip
GOLDEN_ANGLE = 137.50776405003785
TIME_FORMAT = "%a %d %b %Y %H:%M"


def _extra_colour(index: int) -> str:
    hue = (index * GOLDEN_ANGLE) % 360 / 360
    lightness = (0.42, 0.55, 0.34)[index % 3]
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.65)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def campaign_colours(campaigns: Iterable[str]) -> dict[str, str]:
    """A distinct colour per campaign id, in the order given (sort the ids for a stable assignment)."""
    colours: dict[str, str] = {}
    used: set[str] = set()
    extra = 0
    for campaign in dict.fromkeys(campaigns):
        if len(colours) < len(PALETTE):
            colour = PALETTE[len(colours)]
        else:
            colour = _extra_colour(extra)
            extra += 1
            while colour in used:
                colour = _extra_colour(extra)
                extra += 1
        colours[campaign] = colour
        used.add(colour)
    return colours


def zone_label(zone: ZoneInfo) -> str:
    """``Europe/Tallinn, the shop's time zone`` — what a time shown without an offset is in."""
    return f"{zone.key}, the shop's time zone (TIDINGS_TIMEZONE)"


def local_text(moment: datetime, zone: ZoneInfo, fmt: str = TIME_FORMAT) -> str:
    """``Mon 14 Dec 2026 10:00`` in ``zone``; ``moment`` must be aware."""
    if moment.tzinfo is None:
        raise ValueError("local_text needs an aware datetime")
    return moment.astimezone(zone).strftime(fmt)
