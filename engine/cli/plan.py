"""``tidings plan CAMPAIGN``: a dry run — who the next occurrences would reach, when, and who is left out.

Nothing is written: the counts come from the planner's own SELECTs (:func:`engine.runtime.planner.dry_run`),
so what ``plan`` shows is what ``trigger`` and the daemon will write. The first rows are rendered
with the real renderer, so a template error shows up here rather than at send time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from engine.cli.context import STATE
from engine.errors import TidingsError

if TYPE_CHECKING:  # the runtime and the store load when the command runs, not for `tidings --help`
    from sqlalchemy.engine import Connection

    from engine.render import Renderer
    from engine.runtime.dry_run import DryRun, PlannedRow
    from engine.runtime.occurrences import Occurrence
    from engine.workspace.loader import Workspace
    from engine.workspace.models import Campaign

HORIZON = timedelta(days=400)
REASONS = {
    "no_consent": "no consent",
    "suppressed": "suppressed",
    "outside_window": "outside the window",
    "frequency_cap": "capped by frequency cap",
    "no_cutoff": "no shipping cutoff for their country",
    "holdout": "held out (to measure the campaign's lift)",
}


def _parse_moment(text: str, zone: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TidingsError(f"--at: expected a date and time such as 2026-12-14T10:00, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _occurrences(campaign: Campaign, workspace: Workspace, at: str | None, count: int) -> list[Occurrence]:
    from engine.runtime.occurrences import campaign_zone, current_occurrence, due_occurrences

    settings = STATE.settings
    schedules = workspace.schedules
    if at is not None:
        moment = _parse_moment(at, campaign_zone(campaign, settings.zone))
        return [current_occurrence(campaign, moment, schedules, default_zone=settings.zone)]
    now = STATE.clock.now()
    upcoming = due_occurrences(
        campaign, schedules, now, now + HORIZON, default_zone=settings.zone, include_inactive=True
    )
    return upcoming[:count] or [current_occurrence(campaign, now, schedules, default_zone=settings.zone)]


@dataclass
class Rendered:
    """A first row's message as it will be sent: its subject, or the render error."""

    subject: str | None
    status: str  # "ok", "—" (nothing to render) or "error: …"


def _render_rows(conn: Connection, renderer: Renderer, campaign: Campaign, result: DryRun) -> list[Rendered]:
    """Render each first row with the facts the planner would store on it, at its send time."""
    from engine.render import RenderError
    from engine.runtime.compose import compose_email
    from engine.runtime.message_context import StoredData

    data = StoredData.load(conn, [row.contact_id for row in result.first_rows])
    rendered = []
    for row in result.first_rows:
        if row.template is None or row.step_id is None:
            rendered.append(Rendered(None, "—"))
            continue
        try:
            message = compose_email(
                renderer,
                STATE.settings,
                campaign,
                template=row.template,
                step_id=row.step_id,
                contact_id=row.contact_id,
                locale=row.locale,
                marketing=campaign.category.value == "marketing",
                facts=row.facts,
                data=data,
                now=row.scheduled_for,
            )
        except RenderError as exc:
            rendered.append(Rendered(None, f"error: {' '.join(str(exc).split())}"))
            continue
        rendered.append(Rendered(message.subject, "ok"))
    return rendered


def _print(result: DryRun, renders: list[Rendered]) -> None:
    out = STATE.out
    occurrence = result.occurrence
    title = f"{result.campaign} · occurrence {occurrence.key} · fires {occurrence.fire_at:%Y-%m-%d %H:%M} UTC"
    out.print(f"[bold]{title}[/bold]", highlight=False)
    if result.first_send is not None and result.reach:
        head = result.first_rows[0] if result.first_rows else None
        zone = head.facts.zone_info if head is not None else None
        shown = result.first_send.astimezone(zone) if zone is not None else result.first_send
        out.print(f"  first message due {shown:%Y-%m-%d %H:%M} {shown.tzname()}", highlight=False)
    if result.event_type:
        out.print(f"  enrols on each {result.event_type} event; counted here: who the audience holds today")
    if result.already:
        done = ", ".join(f"{count:,} {state}" for state, count in sorted(result.already.items()))
        out.print(f"  already fired: {done} (planning it again adds nothing for them)", highlight=False)
    if result.exits:
        ended = ", ".join(f"{count:,} {kind}" for kind, count in sorted(result.exits.items()))
        out.print(f"  flows ended early: {ended}", highlight=False)
        for reason in result.exit_examples:
            out.print(f"    {reason}", markup=False, highlight=False)
    if result.skipped:
        out.print(f"  nothing would be planned: {result.skipped}")
        return
    if result.mode == "posts":
        out.print("  a broadcast: one post per post step")
        return
    what = "deliveries" if result.mode == "deliveries" else "enrolments in the flow"
    step = f" (step {result.step_id})" if result.step_id else ""
    out.print(f"  matches {result.matched:,}; would reach {result.reach:,} as {what}{step}")
    capped = result.excluded.get("frequency_cap", 0)
    if capped:
        takers = ", ".join(f"{campaign} {count:,}" for campaign, count in result.capped_by.items())
        taken = f" (slot taken by {takers})" if takers else " (by what was sent)"
        out.print(f"  capped: {capped:,}{taken}", highlight=False)
    for test in result.tests:
        counts = ""
        if test.test is not None and test.rest is not None:
            counts = f": {test.test:,} get the variants first, {test.rest:,} get the winner"
        where = f" (step {test.step_id})" if test.step_id != result.step_id else ""
        out.print(f"  {test.description}{where}{counts}", highlight=False)
    if result.holdout is not None and result.holdout_share is not None:
        out.print(
            f"  holdout {result.holdout_share:.0%}: {result.holdout:,} kept unsent to measure the lift",
            highlight=False,
        )
    reasons = Table(title="Left out", show_edge=False)
    reasons.add_column("reason")
    reasons.add_column("contacts", justify="right")
    for key, count in result.excluded.items():
        reasons.add_row(REASONS.get(key, key), f"{count:,}")
    out.print(reasons)
    if result.why_zero:
        why = Table(title="Why nobody: what each audience condition keeps", show_edge=False)
        why.add_column("condition")
        why.add_column("alone", justify="right")
        why.add_column("with those above", justify="right")
        for row in result.why_zero:
            alone = "—" if row["alone"] is None else f"{row['alone']:,}"
            why.add_row(row["condition"], alone, f"{row['together']:,}")
        out.print(why)
    split = Table(title="Reach by locale, country and variant", show_edge=False)
    for column in ("locale", "country", "variant"):
        split.add_column(column)
    split.add_column("contacts", justify="right")
    for row in result.breakdown:
        split.add_row(row["locale"] or "—", row["country"] or "—", row["variant"] or "—", f"{row['count']:,}")
    out.print(split)
    first = Table(title="First rows", show_edge=False)
    for column in ("email", "local send time", "template", "locale", "subject", "renders"):
        first.add_column(column)
    for planned, rendered in zip(result.first_rows, renders, strict=True):
        first.add_row(
            planned.email,
            planned.local_time,
            planned.template or "—",
            planned.locale or "—",
            rendered.subject or "—",
            rendered.status,
        )
    out.print(first)


def plan_cmd(
    campaign_id: str = typer.Argument(..., metavar="CAMPAIGN", help="The campaign id (its file name)."),
    at: str | None = typer.Option(
        None, "--at", help="Plan what fires at this moment (campaign zone unless given)."
    ),
    count: int = typer.Option(3, "--next", min=1, max=50, help="How many upcoming occurrences to show."),
    rows: int = typer.Option(10, "--rows", min=0, max=200, help="How many first rows to list and render."),
    as_json: bool = typer.Option(False, "--json", help="Print the same numbers as JSON."),
) -> None:
    """Dry run: how many contacts each occurrence would reach, split by locale, country and variant."""
    from engine.render import Renderer
    from engine.runtime.dry_run import dry_run
    from engine.workspace.loader import load_workspace

    settings = STATE.settings
    loaded = load_workspace(settings.workspace_dir, default_timezone=settings.timezone)
    workspace = loaded.workspace
    if campaign_id not in workspace.campaigns:
        broken = [p for p in loaded.errors if campaign_id in str(p.location.path)]
        if broken:
            raise TidingsError(f"{broken[0]} (run tidings validate)")
        try:
            workspace.campaign(campaign_id)
        except KeyError as exc:
            raise TidingsError(str(exc.args[0])) from None
    campaign = workspace.campaigns[campaign_id]
    engine = STATE.engine(migrate=True)
    renderer = Renderer(settings, workspace.templates_dir)
    results: list[tuple[DryRun, list[Rendered]]] = []
    with engine.connect() as conn:
        for occurrence in _occurrences(campaign, workspace, at, count):
            result = dry_run(
                conn, workspace, campaign, occurrence, settings=settings, now=STATE.clock.now(), sample=rows
            )
            results.append((result, _render_rows(conn, renderer, campaign, result)))
    if as_json:
        payload = [
            {
                **result.as_dict(),
                "first_rows": [
                    _row_json(row, rendered) for row, rendered in zip(result.first_rows, renders, strict=True)
                ],
            }
            for result, renders in results
        ]
        STATE.out.print(
            json.dumps({"campaign": campaign_id, "occurrences": payload}, indent=2),
            markup=False,
            highlight=False,
            emoji=False,
        )
    else:
        if campaign.status.value != "active":
            STATE.out.print(
                f"campaign {campaign_id} is {campaign.status.value}: it sends nothing until it is active"
            )
        for result, renders in results:
            _print(result, renders)
    if any(rendered.status.startswith("error") for _, renders in results for rendered in renders):
        raise typer.Exit(1)


def _row_json(row: PlannedRow, rendered: Rendered) -> dict[str, Any]:
    facts = row.facts
    return {
        "email": row.email,
        "timezone": row.timezone,
        "local_time": row.local_time,
        "scheduled_for": row.scheduled_for.isoformat(),
        "template": row.template,
        "locale": row.locale,
        "variant": row.variant,
        "subject": rendered.subject,
        "renders": rendered.status,
        "facts": facts.to_json(),
    }


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
