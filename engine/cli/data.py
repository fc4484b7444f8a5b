"""``tidings demo-data``, ``tidings import`` and ``tidings export``: getting data in and out of the store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from engine.cli.context import STATE
from engine.transfer.formats import Format
from engine.transfer.kinds import ExportKind, Kind


class _Reporter:
    """A Rich progress bar on a terminal; elsewhere a plain line at every tenth of the way."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.console = STATE.err
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.last_tenth: dict[str, int] = {}

    def __enter__(self) -> _Reporter:
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        label = f"{self.what}: {stage}"
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(label, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)
            return
        tenth = (10 * done // total) if total else done // 10_000
        if tenth != self.last_tenth.get(stage):
            self.last_tenth[stage] = tenth
            shown = f"{done:,}/{total:,}" if total else f"{done:,}"
            self.console.print(f"{label} {shown}", markup=False, highlight=False)


def demo_data_cmd(
    contacts: int = typer.Option(
        5_000, "--contacts", "-n", min=1, help="Exactly this many contacts (gift-card recipients included)."
    ),
    seed: int = typer.Option(
        2026, "--seed", min=0, help="Same seed, same shop: every row is derived from it."
    ),
    season: int | None = typer.Option(
        None,
        "--season",
        min=1970,
        max=9998,
        help="YEAR: orders from November YEAR, redemptions and returns into January YEAR+1. "
        "Default: the season containing today, or the next one.",
    ),
    append: bool = typer.Option(
        False,
        "--append",
        help="Add the demo shop to a store that already has contacts (refused otherwise). "
        "Use a --seed not loaded before; nothing existing is changed.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Load a realistic holiday-season demo shop (EE, RO, US customers, orders, gift cards, events).

    Loads only into an empty store unless --append; the load is one transaction, all or nothing.
    """
    from engine.demo import generate_demo_shop

    engine = STATE.engine(migrate=True)
    with _Reporter("demo-data") as report:
        summary = generate_demo_shop(
            engine,
            contacts=contacts,
            seed=seed,
            season=season,
            clock=STATE.clock,
            append=append,
            progress=report,
        )
    if as_json:
        _print_json(summary.as_dict())
        return
    countries = ", ".join(f"{country} {count:,}" for country, count in summary.contacts_by_country.items())
    STATE.out.print(
        f"Loaded the demo shop (season {summary.season}, seed {summary.seed}) "
        f"in {summary.elapsed_seconds:.1f} s: {summary.contacts:,} contacts ({countries}), "
        f"{summary.orders:,} orders, {summary.gift_cards:,} gift cards "
        f"({summary.gift_cards_redeemed:,} redeemed, "
        f"{summary.gift_cards_scheduled:,} to arrive on a chosen day), {summary.returns:,} returns, "
        f"{summary.exchanges:,} exchanges ({summary.exchanges_shipped:,} shipped), "
        f"{summary.claims:,} claims ({summary.claims_open:,} still open), {summary.events:,} events, "
        f"{summary.email_consents_open:,} with email consent, {summary.suppressions:,} suppressed.",
        markup=False,
        highlight=False,
    )


def _print_json(payload: dict[str, object]) -> None:
    """One object on one line, for scripts (no Rich markup, wrapping or highlighting)."""
    STATE.out.print(
        json.dumps(payload, ensure_ascii=False), markup=False, highlight=False, emoji=False, soft_wrap=True
    )


KIND_HELP = "contacts, orders, gift-cards or events."
FORMAT_HELP = "csv or jsonl; default: from the extension (.csv, .jsonl, .ndjson)."


def import_cmd(
    kind: Kind = typer.Argument(..., help=KIND_HELP),
    file: Path = typer.Argument(..., help="CSV or JSON Lines file.", dir_okay=False),
    fmt: Format | None = typer.Option(None, "--format", help=FORMAT_HELP),
    batch_size: int = typer.Option(1_000, "--batch-size", min=1, max=50_000, help="Rows per transaction."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Import rows, upserting on email (contacts) or external_id; bad rows are listed as FILE:LINE: message.

    Exit 1 when any row was rejected. Contacts may carry consent with its evidence:
    consent_email (yes/no), consent_email_at, _source, _wording, _basis (same for x).
    In CSV an empty cell leaves the stored value as it is; in JSON Lines null clears it.
    """
    from engine.transfer import import_file

    engine = STATE.engine(migrate=True)
    started = time.perf_counter()
    with _Reporter(f"import {kind.value}") as report:
        result = import_file(
            engine,
            kind,
            file,
            clock=STATE.clock,
            fmt=fmt,
            batch_size=batch_size,
            on_problem=lambda problem: STATE.err.print(str(problem), markup=False, highlight=False),
            progress=lambda done: report("rows", done, None),
        )
    if as_json:
        payload = result.as_dict() | {"elapsed_seconds": round(time.perf_counter() - started, 3)}
        _print_json(payload)
    else:
        STATE.out.print(f"{file}: {kind.value} {result.summary()}", markup=False, highlight=False)
    raise typer.Exit(result.exit_code)


def export_cmd(
    kind: ExportKind = typer.Argument(..., help="contacts, orders, gift-cards, events or coupons."),
    file: Path = typer.Argument(..., help="File to write (replaced if it exists).", dir_okay=False),
    fmt: Format | None = typer.Option(None, "--format", help=FORMAT_HELP),
) -> None:
    """Export every row of a kind in the format import reads (a round trip gives the same file);
    coupons: every issued code (code, percent, expires_at, contact, campaign or agent, reason, order)."""
    from engine.transfer import export_file

    count = export_file(STATE.engine(migrate=True), kind, file, fmt=fmt)
    STATE.err.print(f"{file}: exported {count:,} {kind.value}", markup=False, highlight=False)


def register(root: typer.Typer) -> None:
    root.command("demo-data")(demo_data_cmd)
    root.command("import")(import_cmd)
    root.command("export")(export_cmd)
