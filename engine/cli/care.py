"""``tidings care goodwill``: an agent gives a customer a coupon, and the apology is sent at once.

Thin: :func:`engine.runtime.goodwill.give_goodwill` issues the code and writes the message; the
dispatcher sends that one row through the configured email channel (``--no-send`` leaves it to
the running daemon). Exit 0 when the apology went out; 1 when the coupon was given but the
message did not go (a suppressed address, a channel error: the agent should tell the customer
the code another way); 2 when nothing was given (over ``TIDINGS_CARE_MAX_PERCENT``, no such
customer or order, no reason).
"""

from __future__ import annotations

import getpass
import json

import typer

from engine.cli.context import STATE
from engine.errors import TidingsError

care_app = typer.Typer(
    help="Customer care: goodwill coupons, with the apology sent at once.", no_args_is_help=True
)


def _agent(given: str | None) -> str:
    if given and given.strip():
        return given.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise TidingsError("say who gives the coupon: --agent NAME") from None


@care_app.command("goodwill")
def goodwill(
    email: str = typer.Argument(..., help="The customer's address."),
    percent: str = typer.Option(
        ..., "--percent", help="Discount in percent, e.g. 15 (at most TIDINGS_CARE_MAX_PERCENT)."
    ),
    reason: str = typer.Option(
        ..., "--reason", help='Why, in a few words ("late delivery"); recorded with the coupon.'
    ),
    order: str | None = typer.Option(None, "--order", help="The customer's order the apology is about."),
    agent: str | None = typer.Option(
        None, "--agent", help="Who gives it (recorded); default: your login name."
    ),
    send: bool = typer.Option(
        True, "--send/--no-send", help="Send the apology now, or leave it to the daemon."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Give a customer a unique coupon and send them the localised apology (goodwill-apology) at once."""
    from sqlalchemy import select

    from engine.runtime.goodwill import GoodwillRequest, give_goodwill
    from engine.store.models import Delivery
    from engine.workspace.loader import load_workspace

    settings = STATE.sending_settings() if send else STATE.settings
    engine = STATE.engine(migrate=True)
    workspace = load_workspace(settings.workspace_dir, default_timezone=settings.timezone).workspace
    wanted = GoodwillRequest(email=email, percent=percent, reason=reason, agent=_agent(agent), order_id=order)
    given = give_goodwill(engine, workspace, settings, wanted, now=STATE.clock.now())
    state, why = given.delivery_state, None
    if send:
        from engine.runtime.dispatcher import dispatcher_for
        from engine.runtime.heartbeat import claims_kept_alive

        clock = STATE.clock
        with (
            dispatcher_for(engine, settings, clock, workspace) as dispatcher,
            claims_kept_alive(
                engine, clock, lease_seconds=settings.lease_seconds, worker_id=dispatcher.worker_id
            ),
        ):
            dispatcher.drain(ids=[given.delivery_id])
        table = Delivery.__table__  # type: ignore[attr-defined]
        with engine.connect() as conn:
            row = conn.execute(
                select(table.c.state, table.c.reason, table.c.last_error).where(
                    table.c.id == given.delivery_id
                )
            ).one()
        state, why = row.state, row.reason or row.last_error
    answer = given.as_dict()
    answer["message"]["state"] = state
    if why:
        answer["message"]["reason"] = why
    if as_json:
        STATE.out.print_json(json.dumps(answer, ensure_ascii=False))
    else:
        coupon = given.coupon
        expires = (
            coupon.expires_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")
            if coupon.expires_at
            else "never"
        )
        about = f", order {given.order_id}" if given.order_id else ""
        STATE.out.print(
            f"Gave {given.email} {answer['coupon']['percent']}% off: {coupon.code}, valid until {expires} "
            f'(recorded: {given.issued_by}, "{given.reason}"{about}).',
            markup=False,
            highlight=False,
        )
        if state == "sent":
            STATE.out.print(
                f"The apology was sent (message {given.delivery_id}).", markup=False, highlight=False
            )
        elif not send:
            STATE.out.print(
                f"The apology is queued (message {given.delivery_id}): the daemon sends it.",
                markup=False,
                highlight=False,
            )
    if send and state != "sent":
        detail = f": {why}" if why else ""
        STATE.err.print(
            f"tidings: the apology was not sent ({state}{detail}); the code {given.coupon.code} is valid: "
            "give it to the customer another way",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(care_app, name="care")


__all__ = ["register"]
