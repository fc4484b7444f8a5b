"""The season chart: per-day message counts from ``tidings simulate``'s report.

``tidings simulate`` writes its report to ``var/simulation.json`` (:data:`REPORT_NAME`
under the workspace's ``var/``); the timeline page reads it when present. The format,
agreed with the simulator::

    {
      "from": "2026-12-01", "to": "2027-01-31",
      "generated_at": "2026-11-20T10:00:00+00:00",          (optional)
      "days": [
        {"date": "2026-12-01", "counts": {"holiday-greetings": 1200, "shipping-deadlines": 310}},
        ...
      ]
    }

``counts`` maps a campaign id to the messages (emails and posts) it sent that day.
Anything else in the file is ignored, so the simulator may add totals by channel or
outcome without breaking the chart. The chart is plain SVG built here as shapes and
drawn by the page template (escaped like any other value): no script, no CDN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPORT_NAME = "simulation.json"

# Distinguishable on white and on the page's dark theme; campaigns beyond ten reuse them.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip

CHART_HEIGHT = 180
BAR_WIDTH = 14
BAR_GAP = 3
LABEL_BAND = 28


class ReportError(ValueError):
    """The report exists but is not in the agreed shape; the page says so instead of a chart."""


@dataclass(frozen=True, slots=True)
class SeasonDay:
    day: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: float
    width: int
    height: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class SeasonChart:
    days: list[SeasonDay]
    campaigns: list[str]
    colours: dict[str, str]
    bars: list[Bar] = field(default_factory=list)
    labels: list[tuple[int, str]] = field(default_factory=list)
    width: int = 0
    height: int = CHART_HEIGHT + LABEL_BAND
    peak: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaigns": list(self.campaigns),
            "peak": self.peak,
            "days": [
                {"date": d.day.isoformat(), "counts": dict(d.counts), "total": d.total} for d in self.days
            ],
        }


def report_path(var_dir: Path) -> Path:
    return var_dir / REPORT_NAME


def read_report(path: Path) -> list[SeasonDay] | None:
    """The report's days in date order, None when there is no report; :class:`ReportError` when malformed."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    days = document.get("days") if isinstance(document, dict) else None
    if not isinstance(days, list):
        raise ReportError(f'{path}: expected an object with a "days" list')
    parsed = [_day(item, index, path) for index, item in enumerate(days)]
    return sorted(parsed, key=lambda d: d.day)


def _day(item: object, index: int, path: Path) -> SeasonDay:
    where = f"{path}: days[{index}]"
    if not isinstance(item, dict):
        raise ReportError(f"{where}: expected an object")
    try:
        day = date.fromisoformat(str(item.get("date")))
    except ValueError:
        raise ReportError(f'{where}: "date" must be YYYY-MM-DD') from None
    counts = item.get("counts", {})
    if not isinstance(counts, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
    ):
        raise ReportError(f'{where}: "counts" must map campaign ids to whole numbers')
    return SeasonDay(day, {str(k): int(v) for k, v in counts.items()})


def build_chart(days: list[SeasonDay]) -> SeasonChart:
    """Stacked bars, one per day, one colour per campaign (in order of first appearance)."""
    campaigns: list[str] = []
    for day in days:
        campaigns.extend(c for c in day.counts if c not in campaigns)
    colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(campaigns)}
    peak = max((d.total for d in days), default=0)
    scale = CHART_HEIGHT / peak if peak else 0.0
    bars: list[Bar] = []
    labels: list[tuple[int, str]] = []
    for index, day in enumerate(days):
        x = index * (BAR_WIDTH + BAR_GAP)
        top = float(CHART_HEIGHT)
        for campaign in campaigns:
            count = day.counts.get(campaign, 0)
            if not count:
                continue
            height = count * scale
            top -= height
            title = f"{day.day.isoformat()} · {campaign}: {count:,}"
            bars.append(Bar(x, round(top, 2), BAR_WIDTH, round(height, 2), colours[campaign], title))
        if day.day.day == 1 or index == 0 or day.day.weekday() == 0:
            labels.append(
                (x, day.day.strftime("%d %b") if day.day.day == 1 or index == 0 else day.day.strftime("%d"))
            )
    width = max(1, len(days) * (BAR_WIDTH + BAR_GAP))
    return SeasonChart(days, campaigns, colours, bars, labels, width, CHART_HEIGHT + LABEL_BAND, peak)
