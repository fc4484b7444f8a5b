"""``tidings serve``, ``suppress …``, ``contact export|forget``: thin commands over feedback."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from engine.cli.context import STATE
from engine.errors import TidingsError

suppress_app = typer.Typer(
    help="Addresses that must not be contacted (shared by every campaign).", no_args_is_help=True
)
contact_app = typer.Typer(help="Data-subject requests: export or forget a contact.", no_args_is_help=True)


def _print_json(data: Any) -> None:
    STATE.out.print_json(json.dumps(data, ensure_ascii=False, default=str))


def serve() -> None:
    """Run the public app (unsubscribe, webhooks, events API, health, metrics) on TIDINGS_PUBLIC_BIND."""
    import uvicorn

    from engine.web.listen import bind_socket, split_bind
    from engine.web.public import create_public_app
    from engine.web.status import CachedWorkspace, workspace_next_up

    settings = STATE.settings
    engine = STATE.engine(migrate=True)
    workspace = CachedWorkspace(settings)
    app = create_public_app(
        settings,
        engine,
        STATE.clock,
        workspace=workspace,
        next_up=workspace_next_up(engine, workspace, settings),
    )
    host, port = split_bind(settings.public_bind)
    sock = bind_socket(host, port, setting="TIDINGS_PUBLIC_BIND")
    STATE.err.print(f"Public app on http://{settings.public_bind} (links point to {settings.public_url})")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=True)
    uvicorn.Server(config).run(sockets=[sock])


@suppress_app.command("add")
def suppress_add(
    email: str = typer.Argument(..., help="Address to suppress."),
    reason: str = typer.Option("manual", "--reason", help="unsubscribe | hard_bounce | spam_report | manual"),
    channel: str = typer.Option("all", "--channel", help="email | x | sms | all"),
) -> None:
    """Stop contacting an address (manual blocks transactional mail too; unsubscribe only marketing)."""
    from engine.store import write_transaction
    from engine.store.suppressions import Reason, add_suppression

    allowed = {r.value for r in Reason} - {Reason.forgotten.value}
    if reason not in allowed:
        raise TidingsError(f"--reason must be one of {', '.join(sorted(allowed))}, got {reason!r}")
    if channel not in {"email", "x", "sms", "all"}:
        raise TidingsError(f"--channel must be email, x, sms or all, got {channel!r}")
    if "@" not in email:
        raise TidingsError(f"not an email address: {email!r}")
    with write_transaction(STATE.engine(migrate=True)) as conn:
        changed = add_suppression(
            conn, email, channel=channel, reason=reason, now=STATE.clock.now(), source="cli"
        )
    STATE.out.print(
        f"{email.lower()} suppressed on {channel} ({reason})" if changed else "Already suppressed."
    )


@suppress_app.command("remove")
def suppress_remove(
    email: str = typer.Argument(...),
    channel: str | None = typer.Option(None, "--channel", help="Only this channel (default: every channel)."),
) -> None:
    """Lift an address's suppressions (a forgotten contact's digest is never lifted)."""
    from engine.store import write_transaction
    from engine.store.suppressions import remove_suppression

    with write_transaction(STATE.engine(migrate=True)) as conn:
        removed = remove_suppression(conn, email, channel)
    if not removed:
        raise TidingsError(
            f"{email.lower()} is not suppressed{' on ' + channel if channel else ''}", exit_code=1
        )
    STATE.out.print(f"Removed {removed} suppression(s) of {email.lower()}.")


@suppress_app.command("list")
def suppress_list(
    email: str | None = typer.Option(None, "--email", help="Only this address."),
    reason: str | None = typer.Option(None, "--reason", help="Only this reason."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List suppressed addresses."""
    from engine.store.suppressions import list_suppressions

    with STATE.engine(migrate=True).connect() as conn:
        rows = list_suppressions(conn, email=email, reasons=[reason] if reason else None)
    if as_json:
        _print_json([row.as_dict() for row in rows])
        return
    table = Table(title=f"{len(rows)} suppression(s)")
    for name in ("email", "channel", "reason", "source", "since"):
        table.add_column(name)
    for row in rows:
        table.add_row(
            row.email, row.channel, row.reason, row.source or "", row.created_at.isoformat(timespec="minutes")
        )
    STATE.out.print(table)


@contact_app.command("export")
def contact_export(email: str = typer.Argument(..., help="The contact's address.")) -> None:
    """Print everything held about a contact as JSON (GDPR access / portability)."""
    from engine.feedback.contact_data import export_contact

    data = export_contact(STATE.engine(migrate=True), email)
    if data is None:
        raise TidingsError(f"nothing is held about {email.lower()}", exit_code=1)
    STATE.out.print(
        json.dumps(data, ensure_ascii=False, indent=2, default=str), markup=False, highlight=False
    )


@contact_app.command("forget")
def contact_forget(
    email: str = typer.Argument(..., help="The contact's address."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Erase a contact's personal data; the address stays suppressed as a SHA-256 digest."""
    from engine.feedback.contact_data import forget_contact

    report = forget_contact(STATE.engine(migrate=True), email, now=STATE.clock.now())
    if as_json:
        _print_json(report.as_dict())
        return
    if report.contact_found:
        STATE.out.print(
            f"Forgot {email.lower()}: contact and its consents, orders, events, coupons deleted; "
            f"{report.deliveries_anonymised} message(s) anonymised; "
            "the address stays suppressed (as a digest)."
        )
    else:
        STATE.out.print(f"No contact {email.lower()}; the address is now suppressed (as a digest).")


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
    root.add_typer(suppress_app, name="suppress")
    root.add_typer(contact_app, name="contact")


__all__ = ["register"]
