"""``tidings render TEMPLATE``: one template rendered exactly as it would be sent.

Thin: it picks the context — the template's ``sample.yaml`` by default, or, with ``--contact``, the
message the campaign would send that real contact (:mod:`engine.runtime.contact_view`: the planner's
own decision for them, at ``--at`` or at their own send time) — asks the renderer, and prints HTML,
the text part or JSON.
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from engine.cli.context import STATE
from engine.errors import TidingsError

if TYPE_CHECKING:  # the renderer, the store and the runtime load when the command runs
    from engine.message import SocialPost
    from engine.render import Renderer
    from engine.workspace.loader import Workspace
    from engine.workspace.models import Campaign


def _workspace() -> Workspace | None:
    """The workspace (None when it does not load: rendering a template's sample still works)."""
    from engine.workspace.loader import load_workspace

    try:
        result = load_workspace(STATE.settings.workspace_dir, default_timezone=STATE.settings.timezone)
    except Exception:  # noqa: BLE001 — a broken workspace is validate's business, not render's
        return None
    return result.workspace


def _campaign_for(workspace: Workspace | None, template: str, campaign_id: str | None) -> Campaign | None:
    """The campaign a template is rendered as: the one named, else the first that sends it."""
    campaigns = workspace.campaigns if workspace is not None else {}
    if campaign_id is None:
        return next((c for c in campaigns.values() if template in c.templates_used()), None)
    campaign = campaigns.get(campaign_id)
    if campaign is None:
        close = difflib.get_close_matches(campaign_id, list(campaigns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TidingsError(f"unknown campaign {campaign_id!r}{hint}")
    if template not in campaign.templates_used():
        raise TidingsError(f"campaign {campaign_id} does not send template {template!r}")
    return campaign


def _parse_at(text: str | None, campaign: Campaign | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TidingsError(f"--at: expected a date and time such as 2026-12-14T10:00, got {text!r}") from None
    if moment.tzinfo is None:
        zone = campaign.zone if campaign is not None and campaign.timezone else STATE.settings.zone
        moment = moment.replace(tzinfo=zone)
    return moment


def render_cmd(
    template: str = typer.Argument(..., help="Template folder name under templates/."),
    locale: str | None = typer.Option(None, "--locale", "-l", help="Locale (default: the contact's)."),
    contact: str | None = typer.Option(None, "--contact", help="Render for a stored contact (id or email)."),
    sample: bool = typer.Option(False, "--sample", help="Render with the template's sample.yaml (default)."),
    text: bool = typer.Option(False, "--text", help="Print the plain-text part."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    campaign: str | None = typer.Option(None, "--campaign", help="Render as this campaign sends it."),
    at: str | None = typer.Option(
        None, "--at", help="With --contact: the moment of the send (default: the contact's own send time)."
    ),
) -> None:
    """Render a template with its sample (or as a campaign sends it to a real contact)."""
    from engine.render import Record, Renderer, load_sample, sample_context

    if contact is not None and sample:
        raise TidingsError("give either --contact or --sample, not both")
    if text and as_json:
        raise TidingsError("give either --text or --json, not both")
    if at is not None and contact is None:
        raise TidingsError("--at needs --contact: it renders the send to that contact at that moment")
    settings = STATE.settings
    renderer = Renderer(settings, settings.workspace_dir / "templates")
    kind = renderer.kind(template)
    workspace = _workspace()
    if contact is not None:
        sender = _campaign_for(workspace, template, campaign)
        if sender is None or workspace is None:
            raise TidingsError(
                f"no campaign sends {template!r}: give --campaign, or render its sample without --contact"
            )
        when = _parse_at(at, sender)
        _render_contact(
            renderer, workspace, sender, template, contact, kind, locale, when, text, as_json, out
        )
        return
    chosen = _campaign_for(workspace, template, campaign) if campaign is not None else None
    data = load_sample(renderer.templates_dir / template / "sample.yaml", settings)
    context = sample_context(data, settings, now=STATE.clock.now())
    step_id = None
    if chosen is not None:
        context["campaign"] = Record({"id": chosen.key, "name": chosen.name})
        step_id = next((s.step_id for s in chosen.iter_steps() if template in s.templates()), None)
        marketing = chosen.category.value == "marketing"
    else:
        # Marketing when a marketing campaign sends it; when none does, as it is written.
        senders = (
            [c for c in workspace.campaigns.values() if template in c.templates_used()] if workspace else []
        )
        from engine.render.checks import is_marketing

        marketing = is_marketing(renderer, template, [c.category.value for c in senders])
    campaign_id = chosen.key if chosen is not None else None
    if kind == "post":
        post = renderer.render_post(template, context, locale=locale, campaign_id=campaign_id)
        _emit_post(renderer, template, locale, post, as_json, out)
        return
    message = renderer.render_email(
        template, context, locale=locale, campaign_id=campaign_id, step_id=step_id, marketing=marketing
    )
    _emit(message.as_dict() if as_json else (message.text if text else message.html), as_json, out)


def _render_contact(
    renderer: Renderer,
    workspace: Workspace,
    campaign: Campaign,
    template: str,
    ref: str,
    kind: str,
    locale: str | None,
    at: datetime | None,
    text: bool,
    as_json: bool,
    out: Path | None,
) -> None:
    """Exactly what the send at that moment would produce for that contact (see contact_view)."""
    from engine.runtime.compose import compose_email, compose_post
    from engine.runtime.contact_view import ContactNotFound, contact_view
    from engine.workspace.models import SendStep

    settings = STATE.settings
    with STATE.engine(migrate=True).connect() as conn:
        try:
            view = contact_view(
                conn, workspace, campaign, template, ref, settings=settings, now=STATE.clock.now(), at=at
            )
        except ContactNotFound as exc:
            raise TidingsError(str(exc)) from None
    for note in view.notes:
        STATE.err.print(f"note: {note}", markup=False)
    if kind == "post":
        post = compose_post(renderer, settings, campaign, template=template, facts=view.facts, now=view.now)
        _emit_post(renderer, template, locale, post, as_json, out)
        return
    step = view.step
    message = compose_email(
        renderer,
        settings,
        campaign,
        template=template,
        step_id=step.step_id if isinstance(step, SendStep) else "",
        contact_id=view.contact_id,
        locale=locale or view.locale,
        marketing=campaign.category.value == "marketing",
        facts=view.facts,
        data=view.data,
        now=view.now,
    )
    if as_json:
        payload = {
            **message.as_dict(),
            "campaign": campaign.key,
            "occurrence": view.occurrence.key,
            "send_at": view.plan.instant.isoformat() if view.plan.instant else None,
            "rendered_at": view.now.isoformat(),
            "excluded": view.plan.excluded,
            "facts": view.facts.to_json(),
            "coupon_placeholder": bool(view.facts.coupon and view.facts.coupon.placeholder),
            "notes": view.notes,
        }
        _emit(payload, True, out)
        return
    _emit(message.text if text else message.html, False, out)


def _emit_post(
    renderer: Renderer, template: str, locale: str | None, post: SocialPost, as_json: bool, out: Path | None
) -> None:
    from twitter_text import parse_tweet

    compiled = renderer.compile_post(template, locale)
    weighted = int(parse_tweet(post.text).weightedLength)
    payload: dict[str, Any] = {"text": post.text, "weighted_length": weighted, "locale": compiled.locale}
    _emit(payload if as_json else post.text, as_json, out)


def _emit(output: str | dict[str, Any], as_json: bool, out: Path | None) -> None:
    text = json.dumps(output, ensure_ascii=False, indent=2) if isinstance(output, dict) else output
    if out is not None:
        try:
            out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            raise TidingsError(f"{out}: cannot write: {exc.strerror or exc}") from None
        STATE.err.print(f"wrote {out}", markup=False)
        return
    typer.echo(text.rstrip("\n"))


def register(root: typer.Typer) -> None:
    root.command("render")(render_cmd)
