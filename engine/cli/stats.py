"""``tidings stats``: did it work — per campaign, step, variant and language, with rates.

The A/B verdict of each tested step (:func:`engine.runtime.ab_tests.verdict_source`) and the
holdout lifts of each campaign with a holdout (:func:`engine.runtime.holdouts.lift_source`) ride on
the same rows, in the table, ``--json`` and ``--csv``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from engine.cli.context import STATE
from engine.errors import TidingsError

if TYPE_CHECKING:
    from engine.feedback.stats import StatsReport, StatsRow

INDENT = {"campaign": "", "step": "  ", "variant": "    ", "locale": "      "}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _with_rate(count: int, rate: float | None) -> str:
    return f"{count:,}" if rate is None else f"{count:,} ({_pct(rate)})"


def _label(row: StatsRow) -> str:
    key = row.key
    text = {
        "campaign": key.campaign,
        "step": f"step {key.step}",
        "variant": f"variant {key.variant}",
        "locale": f"{key.locale}",
    }[row.level.value]
    return INDENT[row.level.value] + text


def _money(amounts: dict[str, object]) -> str:
    return " ".join(f"{amount} {currency}" for currency, amount in sorted(amounts.items())) or "0"


def _style(row: StatsRow) -> str | None:
    return "bold" if row.level.value == "campaign" else None


def _sending(report: StatsReport, title: str) -> Table:
    """What became of the planned messages: planned = pending + skipped + failed + sent."""
    table = Table(title=title)
    table.add_column("campaign · step · variant · language", no_wrap=True)
    for name in ("planned", "pending", "skipped", "failed", "sent"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("skipped, failed because; flows ended early")
    for row in report.rows:
        why = [f"{k} {v:,}" for k, v in sorted(row.skipped_by_reason.items())]
        why += [f"failed: {k} {v:,}" for k, v in sorted(row.failed_by_reason.items())]
        why += [f"exited: {k} {v:,}" for k, v in sorted(row.exits.items())]
        figures = (row.planned, row.pending, row.skipped, row.failed, row.sent)
        table.add_row(_label(row), *(f"{n:,}" for n in figures), ", ".join(why), style=_style(row))
    return table


def _results(report: StatsReport, title: str) -> Table:
    """What recipients did, with rates of the messages that reached an inbox."""
    caption = (
        "rates: of messages that reached an inbox (sent - bounced); "
        "machine: opens by a mail client's prefetch, not a person"
    )
    table = Table(title=title, caption=caption)
    table.add_column("campaign · step · variant · language", no_wrap=True)
    for name in ("delivered", "bounced", "opens", "machine", "clicks", "unsubs", "spam", "conv", "revenue"):
        table.add_column(name, justify="right", no_wrap=True)
    verdicts = any(row.verdict for row in report.rows)
    lifts = any(row.lift for row in report.rows)
    if verdicts:
        table.add_column("A/B verdict")
    if lifts:
        table.add_column("holdout lift")
    for row in report.rows:
        rates = row.rates
        cells = [
            _label(row),
            _with_rate(row.delivered, rates.delivery),
            _with_rate(row.bounced, rates.bounce),
            _with_rate(row.opened, rates.open),
            f"{row.machine_opened:,}",
            _with_rate(row.clicked, rates.click),
            _with_rate(row.unsubscribed, rates.unsubscribe),
            _with_rate(row.complained, rates.complaint),
            _with_rate(row.conversions, rates.conversion),
            _money(dict(row.revenue)),
        ]
        if verdicts:
            cells.append(row.verdict.text() if row.verdict else "")
        if lifts:
            cells.append("\n".join(lift.text() for lift in row.lifts))
        table.add_row(*cells, style=_style(row))
    return table


def stats_cmd(
    campaign: str | None = typer.Argument(None, help="One campaign id; all when omitted."),
    by: str = typer.Option(
        "locale", "--by", help="Finest rows: campaign, step, variant or locale (each adds to the one before)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the same figures as one JSON object."),
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Also write the rows as CSV to this file ('-': standard output).", dir_okay=False
    ),
) -> None:
    """Results per campaign, step, A/B variant and language: planned, pending, sent, opens, revenue…"""
    from engine.feedback.stats import Level, campaign_stats
    from engine.feedback.stats_csv import write_csv
    from engine.runtime.ab_tests import verdict_source
    from engine.runtime.holdouts import lift_source

    try:
        depth = Level(by)
    except ValueError:
        raise typer.BadParameter(
            f"expected campaign, step, variant or locale, got {by!r}", param_hint="--by"
        ) from None
    settings = STATE.settings
    engine = STATE.engine(migrate=True)
    report = campaign_stats(
        engine,
        window_days=settings.conversion_window_days,
        default_locale=settings.default_locale,
        campaign_id=campaign,
        depth=depth,
        verdicts=verdict_source(engine),
        lifts=lift_source(engine, settings.conversion_window_days),
    )
    if csv_file is not None:
        if str(csv_file) == "-":
            write_csv(report, sys.stdout)
            return
        try:
            with csv_file.open("w", encoding="utf-8", newline="") as handle:
                count = write_csv(report, handle)
        except OSError as exc:
            raise TidingsError(f"{csv_file}: cannot write: {exc.strerror or exc}") from None
        STATE.err.print(f"{csv_file}: {count:,} rows", markup=False, highlight=False)
    if as_json:
        STATE.out.print(
            json.dumps(report.as_dict(), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True
        )
        return
    if not report.rows:
        STATE.out.print(f"No messages planned yet{' for ' + campaign if campaign else ''}.", markup=False)
        return
    STATE.out.print(_sending(report, "Sending"))
    window = settings.conversion_window_days
    STATE.out.print(
        _results(report, f"Results (conversions: orders within {window} days of a send or click)")
    )
    for line in _findings(report):
        STATE.out.print(line, markup=False, highlight=False, soft_wrap=True)


def _findings(report: StatsReport) -> list[str]:
    """The A/B verdicts and holdout lifts again, one line each: the table squeezes them on a narrow
    terminal, and they are what a marketer came for."""
    lines = []
    for row in report.rows:
        if row.verdict is not None:
            lines.append(f"A/B test {row.key.campaign} · step {row.key.step}: {row.verdict.text()}")
        for lift in row.lifts:
            lines.append(f"Holdout lift {row.key.campaign}: {lift.text()}")
    return lines


def register(root: typer.Typer) -> None:
    root.command("stats")(stats_cmd)


__all__ = ["register"]
