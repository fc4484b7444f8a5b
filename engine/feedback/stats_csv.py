"""The results report as CSV, for a spreadsheet: one line per row of ``tidings stats``, flat columns.

Rates are plain fractions (0.341, not "34.1%") so a spreadsheet can format and sum them;
revenue gets one column per currency (``revenue_EUR``, ``revenue_per_recipient_EUR``), because
adding euros to dollars is the spreadsheet's mistake to avoid, not ours to make. The A/B verdict
and holdout lift columns are always present (empty where the runtime has none), so a sheet
built on this file keeps its shape when they appear.
"""

from __future__ import annotations

import csv
from typing import Any, TextIO

from engine.feedback.stats import StatsReport, StatsRow

COUNTS = (
    "planned",
    "pending",
    "sent",
    "failed",
    "skipped",
    "delivered",
    "bounced",
    "opened",
    "machine_opened",
    "clicked",
    "complained",
    "unsubscribed",
    "conversions",
)
RATES = ("delivery", "bounce", "open", "click", "click_to_open", "unsubscribe", "complaint", "conversion")
VERDICT = ("verdict_status", "verdict_metric", "verdict_winner", "verdict_confidence")
LIFT = ("lift_metric", "lift", "lift_low", "lift_high", "lift_confidence", "lift_holdout_contacts")


def _currencies(report: StatsReport) -> list[str]:
    return sorted({currency for row in report.rows for currency in row.revenue})


def columns(report: StatsReport) -> list[str]:
    currencies = _currencies(report)
    return [
        "level",
        "campaign",
        "step",
        "variant",
        "locale",
        *COUNTS,
        "skipped_by_reason",
        "failed_by_reason",
        "exits",
        *(f"revenue_{c}" for c in currencies),
        *(f"rate_{name}" for name in RATES),
        *(f"revenue_per_recipient_{c}" for c in currencies),
        *VERDICT,
        *LIFT,
    ]


def _pairs(counts: dict[str, int]) -> str:
    return "; ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _line(row: StatsRow, currencies: list[str]) -> dict[str, Any]:
    rates = row.rates
    line: dict[str, Any] = {
        "level": row.level.value,
        "campaign": row.key.campaign,
        "step": row.key.step or "",
        "variant": row.key.variant or "",
        "locale": row.key.locale or "",
        "skipped_by_reason": _pairs(row.skipped_by_reason),
        "failed_by_reason": _pairs(row.failed_by_reason),
        "exits": _pairs(row.exits),
    }
    line.update({name: getattr(row, name) for name in COUNTS})
    for currency in currencies:
        line[f"revenue_{currency}"] = str(row.revenue.get(currency, "0.00"))
        per = rates.revenue_per_recipient.get(currency)
        line[f"revenue_per_recipient_{currency}"] = "" if per is None else str(per)
    for name in RATES:
        value = getattr(rates, name)
        line[f"rate_{name}"] = "" if value is None else f"{value:.6f}".rstrip("0").rstrip(".")
    verdict, lift = row.verdict, row.lift
    line.update(
        {
            "verdict_status": verdict.status if verdict else "",
            "verdict_metric": verdict.metric if verdict else "",
            "verdict_winner": (verdict.winner or "") if verdict else "",
            "verdict_confidence": "" if verdict is None or verdict.confidence is None else verdict.confidence,
            "lift_metric": lift.metric if lift else "",
            "lift": lift.lift if lift else "",
            "lift_low": lift.low if lift else "",
            "lift_high": lift.high if lift else "",
            "lift_confidence": lift.confidence if lift else "",
            "lift_holdout_contacts": lift.holdout_contacts if lift else "",
        }
    )
    return line


def write_csv(report: StatsReport, stream: TextIO) -> int:
    """Write the header and one line per row; returns the number of rows written."""
    currencies = _currencies(report)
    writer = csv.DictWriter(stream, fieldnames=columns(report), lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow(_line(row, currencies))
    return len(report.rows)
