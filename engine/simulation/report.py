"""The season report: what a simulated season sent, per day and campaign, and what it held back.

Counts come from the simulation's own outbox table, so they are what was written to the
file outbox, by construction. The same report is printed as a Rich table, written as JSON
(``var/simulation.json``, which the preview's timeline page reads) and as a standalone HTML
page with a chart of sends per day per campaign (inline SVG: the page works offline).
Each A/B test the season decided is listed with its verdict and figures, and each campaign with
a holdout with its lift (:mod:`engine.runtime.ab_tests`, :mod:`engine.runtime.holdouts`), from the
simulation's own store and the engagement its model drew.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, select_autoescape
from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.display import campaign_colours, local_text, zone_label
from engine.runtime.ab_tests import TestRecord, load_tests
from engine.runtime.exits import example_reasons, exit_counts
from engine.runtime.holdouts import campaign_lifts, holdout_campaigns
from engine.runtime.policy import reason_group
from engine.simulation.copy import Baseline
from engine.store.models import Delivery, Post

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
POST = Post.__table__  # type: ignore[attr-defined]


@dataclass
class CampaignSummary:
    campaign: str
    name: str
    sent: int = 0
    failed: int = 0
    pending: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    by_locale: Counter[str] = field(default_factory=Counter)
    by_variant: Counter[str] = field(default_factory=Counter)
    first_send: datetime | None = None
    last_send: datetime | None = None
    failures: Counter[str] = field(default_factory=Counter)  # render_error, permanent, …
    exits: Counter[str] = field(default_factory=Counter)  # flows ended early: expression_error, …
    exit_examples: list[str] = field(default_factory=list)  # the full reasons, with file and line

    def note_send(self, moment: datetime) -> None:
        if self.first_send is None or moment < self.first_send:
            self.first_send = moment
        if self.last_send is None or moment > self.last_send:
            self.last_send = moment

    def as_dict(self, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "sent": self.sent,
            "failed": self.failed,
            "pending": self.pending,
            "skipped": dict(sorted(self.skipped.items())),
            "failures": dict(sorted(self.failures.items())),
            "exits": dict(sorted(self.exits.items())),
            "exit_examples": list(self.exit_examples),
            "by_channel": dict(sorted(self.by_channel.items())),
            "by_locale": dict(sorted(self.by_locale.items())),
            "by_variant": dict(sorted(self.by_variant.items())),
            "first_send": self.first_send.astimezone(zone).isoformat() if self.first_send else None,
            "last_send": self.last_send.astimezone(zone).isoformat() if self.last_send else None,
        }


@dataclass
class SeasonReport:
    start: date
    end: date
    zone: ZoneInfo
    fired: int
    elapsed_seconds: float
    outbox_dir: Path
    campaigns: dict[str, CampaignSummary]
    per_day: dict[date, Counter[str]]
    per_day_detail: dict[date, dict[str, dict[str, Counter[str]]]]
    #: How many times the simulated clock stopped, and the wall time of each phase of the walk.
    stops: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    #: When the simulation was run (the command's clock), so a page showing it can say so.
    generated_at: datetime | None = None
    #: A/B tests the season ran (verdicts and figures), holdout lifts by campaign, and the
    #: engagement model's rates and what it drew.
    tests: list[TestRecord] = field(default_factory=list)
    lifts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    engagement: dict[str, Any] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        skipped = sum(sum(c.skipped.values()) for c in self.campaigns.values())
        return {
            "sent": sum(c.sent for c in self.campaigns.values()),
            "failed": sum(c.failed for c in self.campaigns.values()),
            "skipped": skipped,
            "pending": sum(c.pending for c in self.campaigns.values()),
            "exited": sum(sum(c.exits.values()) for c in self.campaigns.values()),
            "fired": self.fired,
        }

    def days(self) -> list[date]:
        span = (self.end - self.start).days + 1
        return [self.start + timedelta(days=i) for i in range(span)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
            "timezone": self.zone.key,
            "elapsed_seconds": round(self.elapsed_seconds, 2),
            "stops": self.stops,
            "phase_seconds": {name: round(value, 2) for name, value in sorted(self.phase_seconds.items())},
            "outbox_dir": str(self.outbox_dir),
            "totals": self.totals,
            "campaigns": {key: c.as_dict(self.zone) for key, c in sorted(self.campaigns.items())},
            "ab_tests": [test.as_dict() for test in self.tests],
            "holdout_lifts": dict(sorted(self.lifts.items())),
            "engagement": dict(self.engagement),
            "days": [
                {
                    "date": day.isoformat(),
                    "counts": dict(sorted(self.per_day.get(day, Counter()).items())),
                    "detail": {
                        cid: {dim: dict(counter) for dim, counter in dims.items()}
                        for cid, dims in sorted(self.per_day_detail.get(day, {}).items())
                    },
                }
                for day in self.days()
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def write_html(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(self), encoding="utf-8")


def _language(locale: str | None, default: str) -> str:
    return (locale or default).replace("_", "-").split("-")[0].lower()


def build_report(
    engine: Engine,
    workspace: Any,
    *,
    start: date,
    end: date,
    zone: ZoneInfo,
    default_locale: str,
    fired: int,
    elapsed: float,
    outbox_dir: Path,
    baseline: Baseline,
    window_days: int = 7,
) -> SeasonReport:
    """The season as this simulation played it: rows it planned, and older rows it sent or refused
    (``baseline``); what the store held before and left untouched is not this season's."""
    campaigns: dict[str, CampaignSummary] = {
        key: CampaignSummary(key, getattr(c, "name", key)) for key, c in workspace.campaigns.items()
    }
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    detail: dict[date, dict[str, dict[str, Counter[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Counter))
    )

    def summary(campaign_id: str) -> CampaignSummary:
        return campaigns.setdefault(campaign_id, CampaignSummary(campaign_id, campaign_id))

    def count(
        campaign_id: str, state: str, reason: str | None, moment: datetime | None, dims: dict[str, str]
    ) -> None:
        entry = summary(campaign_id)
        if state == "sent" and moment is not None:
            entry.sent += 1
            entry.note_send(moment)
            day = moment.astimezone(zone).date()
            per_day[day][campaign_id] += 1
            for dim, value in dims.items():
                getattr(entry, f"by_{dim}")[value] += 1
                detail[day][campaign_id][dim][value] += 1
        elif state == "failed":
            entry.failed += 1
            entry.failures[reason_group(reason) if reason else "unknown"] += 1
        elif state == "skipped":
            entry.skipped[reason_group(reason)] += 1
        else:
            entry.pending += 1

    columns = (
        DELIVERY.c.id,
        DELIVERY.c.campaign_id,
        DELIVERY.c.channel,
        DELIVERY.c.locale,
        DELIVERY.c.variant,
        DELIVERY.c.state,
        DELIVERY.c.reason,
        DELIVERY.c.sent_at,
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(select(*columns))
        for row in result:
            if not baseline.counts_delivery(row.id):
                continue
            dims = {
                "channel": row.channel,
                "locale": _language(row.locale, default_locale),
                "variant": row.variant or "-",
            }
            count(row.campaign_id, row.state, row.reason, row.sent_at, dims)
        for post in conn.execute(
            select(
                POST.c.id, POST.c.campaign_id, POST.c.channel, POST.c.state, POST.c.reason, POST.c.posted_at
            )
        ):
            if not baseline.counts_post(post.id):
                continue
            count(post.campaign_id, post.state, post.reason, post.posted_at, {"channel": post.channel})
        season_start = datetime.combine(start, datetime.min.time(), zone)
        for cid, kinds in exit_counts(conn, since=season_start).items():
            summary(cid).exits.update(kinds)
            summary(cid).exit_examples = example_reasons(conn, cid)
        tests = [t for t in load_tests(conn) if t.decide_at >= season_start]
        lifts = {
            cid: [{**lift.as_dict(), "text": lift.text()} for lift in campaign_lifts(conn, cid, window_days)]
            for cid in sorted(holdout_campaigns(conn))
        }
    return SeasonReport(
        start=start,
        end=end,
        zone=zone,
        fired=fired,
        elapsed_seconds=elapsed,
        outbox_dir=outbox_dir,
        campaigns=campaigns,
        per_day=dict(per_day),
        per_day_detail={d: {c: dict(v) for c, v in camps.items()} for d, camps in detail.items()},
        tests=tests,
        lifts={cid: found for cid, found in lifts.items() if found},
    )


_HTML = (Path(__file__).with_name("report.html")).read_text(encoding="utf-8")


def _chart(report: SeasonReport, series: list[dict[str, str]]) -> dict[str, Any]:
    days = report.days()
    width, height, left = max(640, 40 + 14 * len(days)), 260, 40
    step = (width - left) / max(1, len(days))
    peak = max((sum(report.per_day.get(d, Counter()).values()) for d in days), default=0) or 1
    scale = (height - 10) / peak
    bars, labels = [], []
    for i, day in enumerate(days):
        x = left + i * step + 1
        y = float(height)
        for s in series:
            n = report.per_day.get(day, Counter()).get(s["id"], 0)
            if not n:
                continue
            h = n * scale
            y -= h
            bars.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(max(step - 2, 1), 1),
                    "h": round(h, 1),
                    "color": s["color"],
                    "day": day.strftime("%a %d %b %Y"),
                    "campaign": s["id"],
                    "count": n,
                }
            )
        if i % max(1, len(days) // 12) == 0:
            labels.append({"x": round(x + step / 2, 1), "text": day.strftime("%d %b")})
    ticks = [{"y": round(height - peak * f * scale, 1), "label": int(peak * f)} for f in (0, 0.5, 1)]
    return {"width": width, "height": height, "bars": bars, "labels": labels, "ticks": ticks}


def _test_view(test: TestRecord, zone: ZoneInfo) -> dict[str, Any]:
    """A test as the report's table shows it: verdict text, decision time, each arm's figures."""
    return {
        "campaign": test.campaign_id,
        "step": test.step_id,
        "occurrence": test.occurrence,
        "metric": test.metric,
        "share": f"{test.share:.0%}",
        "verdict": test.verdict.text(),
        "status": test.status,
        "decided": local_text(test.decided_at, zone) if test.decided_at else None,
        "arms": test.figures.get("arms", []),
    }


def render_html(report: SeasonReport) -> str:
    ids = sorted(report.campaigns)
    colours = campaign_colours(ids)
    sent = sorted({cid for counts in report.per_day.values() for cid in counts})
    series = [{"id": cid, "color": colours[cid]} for cid in sent]
    campaigns = []
    for _, summary in sorted(report.campaigns.items()):
        shown = summary.as_dict(report.zone)
        for name in ("first_send", "last_send"):
            moment = getattr(summary, name)
            shown[name] = local_text(moment, report.zone) if moment else None
        shown["color"] = colours[summary.campaign]
        campaigns.append(shown)
    days = []
    for day in report.days():
        counts = report.per_day.get(day, Counter())
        days.append(
            {"date": day.strftime("%a %d %b %Y"), "counts": dict(counts), "total": sum(counts.values())}
        )
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_HTML).render(
        r=report,
        tests=[_test_view(test, report.zone) for test in report.tests],
        lifts=report.lifts,
        t=report.totals,
        series=series,
        chart=_chart(report, series),
        campaigns=campaigns,
        days=days,
        zone=zone_label(report.zone),
        generated=local_text(report.generated_at, report.zone) if report.generated_at else None,
    )
