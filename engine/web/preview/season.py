"""The season chart: per-day message counts from ``tidings simulate``'s report, and which run it is.

``tidings simulate`` writes its report to ``var/simulation.json`` (:data:`REPORT_NAME`
under the workspace's ``var/``); the timeline page reads it when present. The format,
agreed with the simulator::

    {
      "from": "2026-12-01", "to": "2027-01-31",
      "generated_at": "2026-11-20T10:00:00+00:00",          (when it was run; older reports lack it)
      "timezone": "Europe/Tallinn",                          (the zone its days are in)
      "campaigns": {"holiday-greetings": {...}, ...},       (every campaign of the workspace)
      "days": [
        {"date": "2026-12-01", "counts": {"holiday-greetings": 1200, "shipping-deadlines": 310}},
        ...
      ]
    }

``counts`` maps a campaign id to the messages (emails and posts) it sent that day.
Anything else in the file is ignored, so the simulator may add totals by channel or
outcome without breaking the chart. The chart is plain SVG built here as shapes and
drawn by the page template (escaped like any other value): no script, no CDN.

Only the *last* simulation is kept, and a quick one often covers a few days: so the page
says which run it shows (its range and when it ran) and whether it covers the season —
the dates the active campaigns name (windows and ``at`` times, :func:`coverage`) — and
which campaigns fall outside it. Colours come from :func:`engine.display.campaign_colours`
over the report's sorted campaign ids, as in the HTML report, so a campaign looks the same
in both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.display import campaign_colours

REPORT_NAME = "simulation.json"

CHART_HEIGHT = 180
BAR_WIDTH = 14
BAR_GAP = 3
LABEL_BAND = 28
DAY_FORMAT = "%a %d %b %Y"


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
class SimulationRun:
    """One ``tidings simulate`` run as its report describes it."""

    start: date
    end: date
    days: list[SeasonDay]
    campaigns: list[str]
    generated_at: datetime | None = None
    timezone: str | None = None

    @property
    def length_days(self) -> int:
        return (self.end - self.start).days + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "days": self.length_days,
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
            "timezone": self.timezone,
        }


@dataclass(frozen=True, slots=True)
class Coverage:
    """Whether a run covers the dates the active campaigns name, and which campaigns it misses."""

    season: tuple[date, date] | None  # None: no active campaign names a date
    outside: dict[str, tuple[date, date]] = field(default_factory=dict)

    @property
    def whole(self) -> bool:
        return not self.outside

    def as_dict(self) -> dict[str, Any]:
        return {
            "whole": self.whole,
            "season": [d.isoformat() for d in self.season] if self.season else None,
            "outside": {cid: [s.isoformat(), e.isoformat()] for cid, (s, e) in sorted(self.outside.items())},
        }


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
            "colours": dict(self.colours),
            "peak": self.peak,
            "days": [
                {"date": d.day.isoformat(), "counts": dict(d.counts), "total": d.total} for d in self.days
            ],
        }


def report_path(var_dir: Path) -> Path:
    return var_dir / REPORT_NAME


def read_report(path: Path) -> SimulationRun | None:
    """The run the report describes, None when there is no report; :class:`ReportError` when malformed."""
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
    days_raw = document.get("days") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(days_raw, list):
        raise ReportError(f'{path}: expected an object with a "days" list')
    days = sorted((_day(item, index, path) for index, item in enumerate(days_raw)), key=lambda d: d.day)
    start = _date(document.get("from"), "from", path) or (days[0].day if days else None)
    end = _date(document.get("to"), "to", path) or (days[-1].day if days else None)
    if start is None or end is None:
        raise ReportError(f'{path}: no "from"/"to" and no days: nothing to show')
    generated_at = None
    if document.get("generated_at"):
        try:
            generated_at = datetime.fromisoformat(str(document["generated_at"]))
        except ValueError:
            raise ReportError(f'{path}: "generated_at" must be an ISO date-time') from None
    listed = document.get("campaigns")
    campaigns = {str(key) for key in listed} if isinstance(listed, dict) else set()
    campaigns.update(c for day in days for c in day.counts)
    zone = document.get("timezone")
    return SimulationRun(start, end, days, sorted(campaigns), generated_at, str(zone) if zone else None)


def _date(value: object, name: str, path: Path) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ReportError(f'{path}: "{name}" must be YYYY-MM-DD') from None


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


def coverage(run: SimulationRun, dated: dict[str, tuple[date, date]]) -> Coverage:
    """``dated``: each active campaign's first and last named date (window, or ``at`` day)."""
    if not dated:
        return Coverage(None)
    season = (min(s for s, _ in dated.values()), max(e for _, e in dated.values()))
    outside = {cid: span for cid, span in dated.items() if span[0] < run.start or span[1] > run.end}
    return Coverage(season, outside)


def build_chart(run: SimulationRun) -> SeasonChart:
    """Stacked bars, one per day of the run, one colour per campaign (colours by sorted campaign id)."""
    by_day = {d.day: d for d in run.days}
    days = [
        by_day.get(run.start + timedelta(days=i), SeasonDay(run.start + timedelta(days=i), {}))
        for i in range(run.length_days)
    ]
    colours = campaign_colours(run.campaigns)
    sending = [c for c in run.campaigns if any(d.counts.get(c) for d in days)]
    peak = max((d.total for d in days), default=0)
    scale = CHART_HEIGHT / peak if peak else 0.0
    bars: list[Bar] = []
    labels: list[tuple[int, str]] = []
    for index, day in enumerate(days):
        x = index * (BAR_WIDTH + BAR_GAP)
        top = float(CHART_HEIGHT)
        for campaign in sending:
            count = day.counts.get(campaign, 0)
            if not count:
                continue
            height = count * scale
            top -= height
            title = f"{day.day.strftime(DAY_FORMAT)} · {campaign}: {count:,}"
            bars.append(Bar(x, round(top, 2), BAR_WIDTH, round(height, 2), colours[campaign], title))
        if day.day.day == 1 or index == 0 or day.day.weekday() == 0:
            labels.append(
                (x, day.day.strftime("%d %b") if day.day.day == 1 or index == 0 else day.day.strftime("%d"))
            )
    width = max(1, len(days) * (BAR_WIDTH + BAR_GAP))
    shown = {c: colours[c] for c in sending}
    return SeasonChart(days, sending, shown, bars, labels, width, CHART_HEIGHT + LABEL_BAND, peak)
