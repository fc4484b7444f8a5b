"""``tidings render TEMPLATE``: one template rendered exactly as it would be sent.

Thin: it picks the context (the template's ``sample.yaml`` by default, or a real contact from
the database with ``--contact``), asks the renderer, and prints HTML, the text part or JSON.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import typer

from engine.cli.context import STATE
from engine.errors import TidingsError


def _workspace_campaigns() -> dict[str, Any]:
    """The workspace's campaigns (empty when the workspace does not load: render still works)."""
    from engine.workspace.loader import load_workspace

    try:
        result = load_workspace(STATE.settings.workspace_dir, default_timezone=STATE.settings.timezone)
    except Exception:  # noqa: BLE001 — a broken workspace is validate's business, not render's
        return {}
    return dict(result.workspace.campaigns)


def _campaign_for(template: str, campaign_id: str | None) -> tuple[Any, str | None, bool]:
    """(campaign or None, step id, marketing) for rendering ``template``."""
    campaigns = _workspace_campaigns()
    senders = [c for c in campaigns.values() if template in c.templates_used()]
    if campaign_id is None:
        marketing = not senders or any(str(c.category.value) == "marketing" for c in senders)
        return None, None, marketing
    campaign = campaigns.get(campaign_id)
    if campaign is None:
        close = difflib.get_close_matches(campaign_id, list(campaigns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TidingsError(f"unknown campaign {campaign_id!r}{hint}")
    step_id = next((s.step_id for s in campaign.iter_steps() if template in s.templates()), None)
    return campaign, step_id, str(campaign.category.value) == "marketing"


def _contact_context(key: str, sample: dict[str, Any]) -> dict[str, Any]:
    """Context for a stored contact; what the store cannot know (cutoff, event …) comes from the sample."""
    from sqlmodel import Session, col, select

    from engine.render import build_context
    from engine.render.stored import find_contact, latest_order_and_card
    from engine.store.models import Coupon

    engine = STATE.engine(migrate=True)
    with Session(engine) as session:
        contact = find_contact(session, key)
        if contact is None:
            raise TidingsError(f"no contact {key!r} in the database")
        assert contact.id is not None
        order, card = latest_order_and_card(session, contact.id)
        coupon = session.exec(
            select(Coupon).where(Coupon.contact_id == contact.id).order_by(col(Coupon.created_at).desc())
        ).first()
        borrowed = [name for name in ("cutoff", "event", "trigger_date") if sample.get(name) is not None]
        if coupon is None and sample.get("coupon") is not None:
            borrowed.append("coupon")
        if borrowed:
            STATE.err.print(f"note: {', '.join(borrowed)} taken from sample.yaml", markup=False)
        from engine.render import sample_context

        from_sample = sample_context(sample, STATE.settings, now=STATE.clock.now())
        return build_context(
            STATE.settings,
            contact=contact,
            now=STATE.clock.now(),
            campaign=from_sample["campaign"],
            order=order,
            gift_card=card,
            cutoff=from_sample["cutoff"],
            coupon=coupon if coupon is not None else from_sample["coupon"],
            event=from_sample["event"],
            trigger_date=from_sample["trigger_date"],
        )


def render_cmd(
    template: str = typer.Argument(..., help="Template folder name under templates/."),
    locale: str | None = typer.Option(None, "--locale", "-l", help="Locale (default: the contact's)."),
    contact: str | None = typer.Option(None, "--contact", help="Render for a stored contact (id or email)."),
    sample: bool = typer.Option(False, "--sample", help="Render with the template's sample.yaml (default)."),
    text: bool = typer.Option(False, "--text", help="Print the plain-text part."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    campaign: str | None = typer.Option(None, "--campaign", help="Render as this campaign sends it."),
) -> None:
    """Render a template with its sample (or a real contact) and print the HTML, text or JSON."""
    from twitter_text import parse_tweet

    from engine.render import Renderer, load_sample, sample_context

    if contact is not None and sample:
        raise TidingsError("give either --contact or --sample, not both")
    if text and as_json:
        raise TidingsError("give either --text or --json, not both")
    settings = STATE.settings
    renderer = Renderer(settings, settings.workspace_dir / "templates")
    kind = renderer.kind(template)
    data = load_sample(renderer.templates_dir / template / "sample.yaml", settings)
    context = (
        _contact_context(contact, data)
        if contact is not None
        else sample_context(data, settings, now=STATE.clock.now())
    )
    chosen, step_id, marketing = _campaign_for(template, campaign)
    campaign_id = chosen.key if chosen is not None else None
    if chosen is not None:
        from engine.render import Record

        context["campaign"] = Record({"id": chosen.key, "name": chosen.name})
    if kind == "post":
        post = renderer.render_post(template, context, locale=locale, campaign_id=campaign_id)
        compiled = renderer.compile_post(template, locale)
        weighted = int(parse_tweet(post.text).weightedLength)
        payload: dict[str, Any] = {"text": post.text, "weighted_length": weighted, "locale": compiled.locale}
        output = json.dumps(payload, ensure_ascii=False, indent=2) if as_json else post.text
    else:
        message = renderer.render_email(
            template, context, locale=locale, campaign_id=campaign_id, step_id=step_id, marketing=marketing
        )
        if as_json:
            output = json.dumps(message.as_dict(), ensure_ascii=False, indent=2)
        else:
            output = message.text if text else message.html
    if out is not None:
        try:
            out.write_text(output if output.endswith("\n") else output + "\n", encoding="utf-8")
        except OSError as exc:
            raise TidingsError(f"{out}: cannot write: {exc.strerror or exc}") from None
        STATE.err.print(f"wrote {out}", markup=False)
        return
    typer.echo(output.rstrip("\n"))


def register(root: typer.Typer) -> None:
    root.command("render")(render_cmd)
