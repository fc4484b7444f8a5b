"""``tidings run`` (the daemon) and ``tidings simulate`` (the daemon on a simulated clock)."""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engine.cli.context import STATE
from engine.errors import TidingsError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from engine.runtime.upcoming import NextSend


def _workspace_line(workspace: object, database: str) -> str:
    campaigns = getattr(workspace, "campaigns", {})
    index = getattr(workspace, "templates", None)
    names = index.names() if index is not None else []
    locales: set[str] = set()
    if index is not None:
        for name in names:
            info = index.get(name)
            if info is not None:
                locales.update(info.locales)
    languages = "/".join([STATE.settings.default_locale, *sorted(locales - {STATE.settings.default_locale})])
    root = STATE.settings.workspace_dir
    shown = "." if root == Path.cwd() else str(root)
    return (
        f"Tidings — workspace {shown} ({len(campaigns)} campaigns, {len(names)} templates × {languages}), "
        f"database {database}"
    )


def _database_label() -> str:
    settings = STATE.settings
    if settings.is_sqlite:
        path = Path(settings.database_url_resolved.removeprefix("sqlite:///"))
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return STATE.engine().url.render_as_string(hide_password=True)


def _load_demo_if_empty(contacts: int) -> None:
    from sqlalchemy import func, select

    from engine.demo.load import generate_demo_shop
    from engine.store.models import Contact

    engine = STATE.engine()
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(Contact.__table__)).scalar_one()  # type: ignore[attr-defined]
    if existing:
        return
    summary = generate_demo_shop(engine, contacts=contacts, clock=STATE.clock)
    countries = ", ".join(sorted(summary.contacts_by_country))
    STATE.out.print(
        f"Loaded the demo shop: {summary.contacts:,} contacts ({countries}), {summary.orders:,} orders, "
        f"{summary.gift_cards:,} gift cards",
        markup=False,
    )


def _season_hint() -> str:
    """``--from/--to`` of the holiday season containing today, or the next one (December to January)."""
    today = STATE.clock.now().astimezone(STATE.settings.zone).date()
    year = today.year - 1 if today.month == 1 else today.year
    return f"--from {year}-12-01 --to {year + 1}-01-31"


def _print_next_up(sends: list[NextSend]) -> None:
    """ "Next up": the next moments anything goes out, and when none is today, where to look instead."""
    out = STATE.out
    zone = STATE.settings.zone
    today = STATE.clock.now().astimezone(zone).date()
    if not sends:
        out.print("Next up: nothing scheduled ahead.", markup=False)
    else:
        out.print("Next up:", markup=False)
        for send in sends:
            out.print(f"  {send.label()}  {send.campaign_id} · {send.who()}", markup=False, highlight=False)
    if not sends or sends[0].at.astimezone(zone).date() > today:
        out.print(
            f"Nothing goes out today. To watch the season play out: tidings simulate {_season_hint()}",
            markup=False,
        )


def run_cmd(
    demo_if_empty: bool = typer.Option(
        False,
        "--demo-if-empty",
        help="Load the demo shop first when the store has no contacts (make run does).",
    ),
    demo_contacts: int = typer.Option(5000, "--demo-contacts", min=1, help="Contacts in that demo shop."),
    public: bool = typer.Option(
        True, "--public/--no-public", help="Serve the public app on TIDINGS_PUBLIC_BIND."
    ),
    watch: bool = typer.Option(
        True, "--watch/--no-watch", help="Reload the workspace when its files change."
    ),
) -> None:
    """Run the daemon: fire campaigns on schedule and on events, send the outbox, serve the public app."""
    from engine.daemon import Daemon

    settings = STATE.sending_settings()
    engine = STATE.engine(migrate=True)
    if demo_if_empty:
        _load_demo_if_empty(demo_contacts)
    out = STATE.out

    def banner() -> None:
        """Printed once the daemon holds the lock and its jobs are in step: what runs, where, and when."""
        out.print(_workspace_line(daemon.workspace, _database_label()), markup=False)
        email = (
            f"file outbox {settings.outbox_path / 'email'}"
            if settings.email_channel.value == "outbox"
            else settings.email_channel.value
        )
        social = (
            f"file outbox {settings.outbox_path / 'social'}"
            if settings.social_channel.value == "outbox"
            else settings.social_channel.value
        )
        public_line = f" · public app {settings.public_url}" if public else ""
        out.print(f"Email → {email} · X → {social}{public_line}", markup=False)
        upcoming = daemon.upcoming()
        rows = daemon.schedule_table(upcoming)
        if rows:
            out.print("Scheduled:", markup=False)
            width = max(len(key) for key, _ in rows)
            for key, when in rows:
                out.print(f"  {key.ljust(width)}  {when}", markup=False, highlight=False)
        _print_next_up(daemon.next_up(upcoming))
        out.print(
            f"Preview templates: tidings preview · See the season: tidings simulate {_season_hint()}",
            markup=False,
        )

    daemon = Daemon(
        settings,
        engine,
        clock=STATE.clock,
        serve_public=public,
        watch=watch,
        say=lambda line: out.print(line, markup=False, highlight=False),
        on_started=banner,
    )
    daemon.run_forever()
    if daemon.abandoned:
        # Threads still stuck past the shutdown bound (a provider that hangs, a fire of a million
        # contacts) would hold the interpreter's exit for as long as they take. Everything that
        # counts is in the store already (claims run out, the fire ledger completes the fire).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint=option) from None


def simulate_cmd(
    start: str = typer.Option(..., "--from", help="First day (YYYY-MM-DD, in TIDINGS_TIMEZONE)."),
    end: str = typer.Option(..., "--to", help="Last day, included."),
    report: Path | None = typer.Option(
        None, "--report", help="Also write the season report as HTML to this file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    keep: Path | None = typer.Option(
        None,
        "--keep",
        help="Keep the simulated store as this SQLite file (for stats, plan or a later season against it).",
    ),
) -> None:
    """Play a season on a simulated clock against a copy of the database; report every send and skip.

    The copy starts from the store as it is: what was already sent counts as sent.
    """
    from engine.simulation import SimulationOptions, simulate
    from engine.workspace.loader import load_workspace

    first, last = _parse_day(start, "--from"), _parse_day(end, "--to")
    if last < first:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    if (last - first).days > 400:
        raise typer.BadParameter("simulate at most 400 days at a time", param_hint="--to")
    settings = STATE.settings
    loaded = load_workspace(settings.workspace_dir, default_timezone=settings.timezone)
    if not loaded.ok:
        count = len(loaded.errors)
        raise TidingsError(
            f"the workspace has {count} problem(s); first: {loaded.errors[0]} (run `tidings validate`)"
        )
    source = STATE.engine(migrate=True)
    work_dir = settings.var_dir / "simulation"
    outbox = settings.outbox_path / "simulation"
    kept = _keep_file(keep, source) if keep is not None else None
    options = SimulationOptions(first, last, work_dir, outbox, database_file=kept)

    quiet = as_json or not sys.stderr.isatty()
    if quiet:
        result = simulate(settings, source, loaded.workspace, options)
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=STATE.err,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=1.0)

            def progress(begin, now, finish) -> None:  # type: ignore[no-untyped-def]
                span = (finish - begin).total_seconds() or 1.0
                bar.update(
                    task,
                    completed=(now - begin).total_seconds() / span,
                    description=now.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M"),
                )

            result = simulate(settings, source, loaded.workspace, options, progress=progress)
    result.generated_at = STATE.clock.now()
    result.write_json(settings.var_dir / "simulation.json")
    if report is not None:
        result.write_html(report)
    if as_json:
        import json

        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    _print_report(result, report)
    if kept is not None:
        STATE.out.print(
            f"kept the simulated store: TIDINGS_DATABASE_URL=sqlite:///{kept} tidings stats", markup=False
        )


def _keep_file(keep: Path, source: Engine) -> Path:
    """``--keep FILE``: a new SQLite file, never the database being simulated."""
    path = keep.expanduser().resolve()
    database = source.url.database
    if database and source.url.get_backend_name() == "sqlite" and Path(database).resolve() == path:
        raise TidingsError(f"--keep {keep}: that is the database being simulated; give another file")
    if path.exists():
        raise TidingsError(f"--keep {keep}: the file exists; remove it or give another name")
    if not path.parent.is_dir():
        raise TidingsError(f"--keep {keep}: no folder {path.parent}")
    return path


def _print_report(result: object, report: Path | None) -> None:
    from rich.table import Table

    data = result.as_dict()  # type: ignore[attr-defined]
    table = Table(title=f"Season {data['from']} – {data['to']} ({data['timezone']})")
    for column in (
        "campaign",
        "sent",
        "first send",
        "last send",
        "by locale",
        "by variant",
        "skipped",
        "failed",
        "flow exits",
    ):
        table.add_column(column, justify="right" if column == "sent" else "left")
    for cid, c in data["campaigns"].items():
        table.add_row(
            cid,
            f"{c['sent']:,}",
            (c["first_send"] or "—")[:16].replace("T", " "),
            (c["last_send"] or "—")[:16].replace("T", " "),
            ", ".join(f"{k} {v}" for k, v in c["by_locale"].items()),
            ", ".join(f"{k} {v}" for k, v in c["by_variant"].items() if k != "-"),
            ", ".join(f"{k} {v}" for k, v in c["skipped"].items()),
            ", ".join(f"{k} {v}" for k, v in c["failures"].items()) or "0",
            ", ".join(f"{k} {v}" for k, v in c["exits"].items()),
        )
    STATE.out.print(table)
    for cid, c in data["campaigns"].items():
        for reason in c["exit_examples"]:  # what to fix, with its file and line
            STATE.out.print(f"  {cid}: {reason}", markup=False, highlight=False)
    days = Table(title="Sends per day")
    campaign_ids = [cid for cid, c in data["campaigns"].items() if c["sent"]]
    days.add_column("day")
    for cid in campaign_ids:
        days.add_column(cid, justify="right")
    days.add_column("total", justify="right")
    for day in data["days"]:
        if day["counts"]:
            counts = day["counts"]
            days.add_row(
                day["date"], *(str(counts.get(c, "")) for c in campaign_ids), str(sum(counts.values()))
            )
    STATE.out.print(days)
    for test in data.get("ab_tests", []):
        STATE.out.print(
            f"A/B test {test['campaign']} · step {test['step']} ({test['occurrence']}): {test['verdict']}",
            markup=False,
            highlight=False,
        )
    for campaign_id, lifts in data.get("holdout_lifts", {}).items():
        for lift in lifts:
            STATE.out.print(f"Holdout lift {campaign_id}: {lift['text']}", markup=False, highlight=False)
    engagement = data.get("engagement") or {}
    if engagement:
        STATE.out.print(
            f"Simulated engagement: {engagement['clicks']:,} clicks, {engagement['orders']:,} orders "
            f"for {engagement['messages']:,} emails",
            markup=False,
        )
    totals = data["totals"]
    STATE.out.print(
        f"{totals['sent']:,} sent, {totals['skipped']:,} skipped, {totals['failed']:,} failed, "
        f"{totals['exited']:,} flows ended early in "
        f"{data['elapsed_seconds']} s · outbox {data['outbox_dir']}"
        + (f" · report {report}" if report else ""),
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("simulate")(simulate_cmd)
