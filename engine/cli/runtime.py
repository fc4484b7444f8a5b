"""``tidings trigger``, ``pause``, ``resume``, ``cancel``: run a campaign now, or stop and restart it.

Thin: the work is :func:`engine.runtime.fire.fire`, the flow stepper, the dispatcher and
:mod:`engine.runtime.controls`; this module parses, calls and prints.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import typer

from engine.cli.context import STATE
from engine.clock import SystemClock
from engine.errors import TidingsError

if TYPE_CHECKING:  # SQLAlchemy and the store load when a command runs, not for `tidings --help`
    from sqlalchemy.engine import Engine

OPEN = ("pending", "retry", "claimed")


class CampaignNotRunnable(TidingsError):
    """The campaign cannot be triggered as it is (draft, paused, cancelled, unknown, invalid)."""


def _workspace() -> Any:
    from engine.workspace.loader import load_workspace

    settings = STATE.settings
    return load_workspace(settings.workspace_dir, default_timezone=settings.timezone)


def _campaign(result: Any, campaign_id: str) -> Any:
    workspace = result.workspace
    if campaign_id in workspace.campaigns:
        return workspace.campaigns[campaign_id]
    broken = [p for p in result.errors if str(p.location.path).endswith(f"{campaign_id}.yaml")]
    if broken:
        raise CampaignNotRunnable(f"campaign {campaign_id} has errors ({broken[0]}); run `tidings validate`")
    try:
        workspace.campaign(campaign_id)
    except KeyError as exc:
        raise CampaignNotRunnable(str(exc.args[0])) from None
    raise CampaignNotRunnable(f"no campaign {campaign_id!r}")  # pragma: no cover — campaign() raised


def _counts(engine: Engine, campaign_id: str, occurrence: str) -> tuple[Counter[str], Counter[str]]:
    """Rows of one occurrence by state, and refusals/failures by reason."""
    from sqlalchemy import func, select

    from engine.store.models import Delivery, Post

    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    with engine.connect() as conn:
        for table in (Delivery.__table__, Post.__table__):  # type: ignore[attr-defined]
            rows = conn.execute(
                select(table.c.state, table.c.reason, func.count())
                .where(table.c.campaign_id == campaign_id, table.c.occurrence == occurrence)
                .group_by(table.c.state, table.c.reason)
            )
            for state, reason, count in rows:
                states[state] += count
                if reason and state in ("skipped", "failed", "pending"):
                    reasons[f"{state}:{reason}"] += count
    return states, reasons


def _earliest_open(engine: Engine, campaign_id: str, occurrence: str) -> Any:
    from sqlalchemy import func, select

    from engine.store.models import Delivery, Post

    earliest = None
    with engine.connect() as conn:
        for table in (Delivery.__table__, Post.__table__):  # type: ignore[attr-defined]
            found = conn.execute(
                select(func.min(table.c.scheduled_for)).where(
                    table.c.campaign_id == campaign_id,
                    table.c.occurrence == occurrence,
                    table.c.state.in_(OPEN),
                )
            ).scalar()
            if found is not None and (earliest is None or found < earliest):
                earliest = found
    return earliest


def _wait_for(engine: Engine, workspace: Any, campaign: Any, occurrence: str, quiet: bool) -> None:
    """Advance flows and dispatch until the occurrence has no open row (or only rows held for hours)."""
    from engine.runtime.ab_tests import decide_due_tests
    from engine.runtime.dispatcher import dispatcher_for
    from engine.runtime.flows import advance_due
    from engine.runtime.heartbeat import claims_kept_alive

    settings, clock = STATE.settings, STATE.clock
    wall = isinstance(clock, SystemClock)
    last_report = 0.0
    with (
        dispatcher_for(engine, settings, clock, workspace) as dispatcher,
        claims_kept_alive(
            engine, clock, lease_seconds=settings.lease_seconds, worker_id=dispatcher.worker_id
        ),
    ):
        while True:
            advance_due(engine, workspace, clock, settings)
            decide_due_tests(engine, workspace, clock, settings)
            stats = dispatcher.drain(campaign=campaign.key, occurrence=occurrence)
            states, _ = _counts(engine, campaign.key, occurrence)
            open_rows = sum(states[s] for s in OPEN)
            if not quiet and time.monotonic() - last_report > 2:
                last_report = time.monotonic()
                done = sum(states.values()) - open_rows
                STATE.err.print(f"… {done}/{sum(states.values())} done ({states['sent']} sent)", markup=False)
            if open_rows == 0:
                return
            earliest = _earliest_open(engine, campaign.key, occurrence)
            wait = (earliest - clock.now()).total_seconds() if earliest is not None else 0.0
            if not wall:
                # A fake or simulated clock: nothing moves unless someone moves it.
                if stats.claimed == 0 and stats.posts_sent == 0:
                    return
                continue
            if wait > settings.retry_max_seconds * 2:
                # Held far ahead (quiet hours, a long provider reset): report instead of blocking for hours.
                return
            if stats.claimed == 0 and stats.posts_sent == 0:
                time.sleep(min(max(wait, 0.05), 1.0))


def trigger_cmd(
    campaign_id: str = typer.Argument(..., metavar="CAMPAIGN", help="The campaign id (its file name)."),
    wait: bool = typer.Option(
        False, "--wait", help="Send now and wait until every message is sent, failed or skipped."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    now: bool = typer.Option(
        False,
        "--now",
        help="Send an occurrence that is not due yet now (without it, trigger only says what it would send).",
    ),
) -> None:
    """Fire the campaign's current occurrence now (idempotent: a second trigger adds nothing).

    An occurrence that is not due yet (the Dec 14 greeting on Dec 5) is only described — who would
    get it, by locale — until ``--now`` confirms it.
    """
    from engine.runtime.controls import control_of
    from engine.runtime.fire import fire, resolve_occurrence
    from engine.runtime.flows import advance_due

    settings, clock = STATE.sending_settings(), STATE.clock
    engine = STATE.engine(migrate=True)
    result = _workspace()
    workspace = result.workspace
    campaign = _campaign(result, campaign_id)
    status = str(getattr(campaign.status, "value", campaign.status))
    if status == "draft":
        raise CampaignNotRunnable(f"campaign {campaign_id} is a draft: set `status: active` to send it")
    if status == "paused":
        raise CampaignNotRunnable(f"campaign {campaign_id} has `status: paused` in its file")
    with engine.connect() as conn:
        control = control_of(conn, campaign_id)
    if control == "paused":
        raise CampaignNotRunnable(f"campaign {campaign_id} is paused: `tidings resume {campaign_id}` first")
    if control == "cancelled":
        raise CampaignNotRunnable(
            f"campaign {campaign_id} was cancelled: `tidings resume {campaign_id}` re-enables it"
        )
    occurrence = resolve_occurrence(workspace, campaign, None, clock=clock, settings=settings)
    if occurrence.fire_at > clock.now() and not now:
        _refuse_early(engine, workspace, campaign, occurrence, as_json)
    plan = fire(engine, workspace, campaign, occurrence, clock=clock, settings=settings, due_now=True)
    if plan.mode == "enrolments":
        advance_due(engine, workspace, clock, settings)
    if wait:
        _wait_for(engine, workspace, campaign, plan.occurrence, quiet=as_json)
    states, reasons = _counts(engine, campaign.key, plan.occurrence)
    payload = {
        "campaign": campaign.key,
        "occurrence": plan.occurrence,
        "mode": plan.mode,
        "created": plan.created,
        "excluded": plan.excluded,
        "rows": dict(states),
        "reasons": dict(reasons),
    }
    if as_json:
        STATE.out.print(json.dumps(payload), markup=False, highlight=False, emoji=False)
    else:
        total = sum(states.values())
        STATE.out.print(
            f"Fired {campaign.key} occurrence {plan.occurrence}: {plan.created} new {plan.mode}"
            f" ({total} messages in this occurrence).",
            markup=False,
        )
        if wait or states["sent"]:
            parts = [
                f"{states[s]} {s}" for s in ("sent", "failed", "skipped", "pending", "retry") if states[s]
            ]
            STATE.out.print("Messages: " + (", ".join(parts) or "none"), markup=False)
        for reason, count in sorted(reasons.items()):
            STATE.out.print(f"  {count} {reason}", markup=False)
    if wait and states["failed"]:
        raise typer.Exit(1)


def _refuse_early(engine: Engine, workspace: Any, campaign: Any, occurrence: Any, as_json: bool) -> None:
    """Say what a not-yet-due occurrence would send, by locale, and stop (exit 2) without --now."""
    from collections import Counter as Tally

    from engine.runtime.dry_run import dry_run

    with engine.connect() as conn:
        result = dry_run(
            conn, workspace, campaign, occurrence, settings=STATE.settings, now=STATE.clock.now(), sample=0
        )
    by_locale: Tally[str] = Tally()
    for row in result.breakdown:
        by_locale[(row["locale"] or STATE.settings.default_locale).split("-")[0]] += row["count"]
    zone = campaign.zone if campaign.timezone else STATE.settings.zone
    due = occurrence.fire_at.astimezone(zone)
    when = f"{due:%Y-%m-%d %H:%M} {zone.key}"
    if occurrence.local_time and occurrence.local is not None:
        when = f"{occurrence.local:%Y-%m-%d %H:%M} in each contact's own zone"
    what = ", ".join(f"{locale} {count:,}" for locale, count in by_locale.most_common()) or "nobody"
    reach = "a post" if result.mode == "posts" else f"{result.reach:,} messages ({what})"
    if as_json:
        payload = {
            "campaign": campaign.key,
            "occurrence": occurrence.key,
            "due": occurrence.fire_at.isoformat(),
            "would_send": result.reach,
            "by_locale": dict(by_locale),
            "sent": False,
        }
        STATE.out.print(json.dumps(payload), markup=False, highlight=False, emoji=False)
    raise TidingsError(
        f"{campaign.key} occurrence {occurrence.key} is not due until {when}: "
        f"sending it now would send {reach}; add --now to send it now"
    )


def _control(action: str, campaign_id: str, as_json: bool) -> None:
    from sqlalchemy import func, select

    from engine.runtime import controls
    from engine.store.models import Delivery

    engine = STATE.engine(migrate=True)
    result = _workspace()
    if campaign_id not in result.workspace.campaigns:
        with engine.connect() as conn:
            known = conn.execute(
                select(func.count()).where(Delivery.__table__.c.campaign_id == campaign_id)  # type: ignore[attr-defined]
            ).scalar_one()
        if not known:
            _campaign(result, campaign_id)  # raises with a did-you-mean
    done = getattr(controls, action)(engine, campaign_id, STATE.clock)
    if as_json:
        STATE.out.print(json.dumps(dataclasses.asdict(done)), markup=False, highlight=False)
        return
    if action == "pause":
        text = (
            f"Paused {campaign_id}: {done.pending} messages wait; `tidings resume {campaign_id}` sends them."
        )
    elif action == "resume":
        text = f"Resumed {campaign_id} (was {done.previous}): {done.pending} messages to send."
    else:
        text = (
            f"Cancelled {campaign_id}: {done.skipped_deliveries} messages and "
            f"{done.skipped_posts} posts skipped, {done.cancelled_enrolments} flows ended."
        )
    STATE.out.print(text, markup=False)


def pause_cmd(
    campaign_id: str = typer.Argument(..., metavar="CAMPAIGN"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stop sending a campaign; nothing is lost, `resume` continues where it stopped."""
    _control("pause", campaign_id, as_json)


def resume_cmd(
    campaign_id: str | None = typer.Argument(None, metavar="CAMPAIGN"),
    channel: str | None = typer.Option(
        None, "--channel", help="Resume a suspended channel (email or x) instead of a campaign."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Continue a paused (or cancelled) campaign, or a suspended channel; nothing sent is sent again."""
    if channel is not None:
        if campaign_id is not None:
            raise TidingsError("give a CAMPAIGN or --channel, not both")
        _resume_channel(channel, as_json)
        return
    if campaign_id is None:
        raise TidingsError("resume what? give a CAMPAIGN, or --channel email|x")
    _control("resume", campaign_id, as_json)


def _resume_channel(channel: str, as_json: bool) -> None:
    from engine.runtime.channel_state import resume, suspensions
    from engine.store import write_transaction

    if channel not in ("email", "x"):
        raise TidingsError(f"--channel: expected email or x, got {channel!r}")
    engine = STATE.engine(migrate=True)
    with write_transaction(engine) as conn:
        was = suspensions(conn, STATE.clock.now()).get(channel)
        lifted = resume(conn, channel)
    if as_json:
        payload = {"channel": channel, "resumed": lifted, "was": was.reason if was else None}
        STATE.out.print(json.dumps(payload), markup=False, highlight=False)
        return
    if was is None:
        STATE.out.print(f"The {channel} channel was not suspended.", markup=False)
    else:
        STATE.out.print(f"Resumed the {channel} channel (was suspended: {was.reason}).", markup=False)


def cancel_cmd(
    campaign_id: str = typer.Argument(..., metavar="CAMPAIGN"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Skip every message of the campaign not sent yet (kept in the outbox as skipped: cancelled)."""
    _control("cancel", campaign_id, as_json)


def register(app: typer.Typer) -> None:
    app.command("trigger")(trigger_cmd)
    app.command("pause")(pause_cmd)
    app.command("resume")(resume_cmd)
    app.command("cancel")(cancel_cmd)
