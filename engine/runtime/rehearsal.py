"""``validate``'s rehearsal: each campaign's messages and expressions, for a handful of real contacts.

Samples show what a template does with the values its author thought of; the store shows what it
does with the shop's: a gift-card recipient with no order, a contact without a first name, a
locale with no file of its own. When the configured database exists, ``validate`` takes, per
campaign, a few contacts the campaign would reach — one per *shape* of data a template or
expression can trip on: their locale, whether they have an order, a gift card with a balance,
and their country (so their cutoff) — and for each:

* asks the planner what it decides for them (:func:`engine.runtime.contact_view.contact_view`:
  the occurrence in effect, their cutoff, zone, trigger date, event), exactly as ``render
  --contact`` and the preview do;
* evaluates every ``if`` and event ``where`` of the campaign over their context
  (:func:`engine.runtime.message_context.message_context`, as the flow stepper does);
* renders every email the campaign sends them (each A/B variant, in the language the planner
  would write on their row: :func:`engine.runtime.delivery_locale.delivery_locale`) through
  :func:`engine.runtime.compose.compose_email`, the dispatcher's own path.

A failure is a problem at the template's or the campaign's line that names the contact, once per
distinct failure. Draft and paused campaigns are rehearsed as if active (what they will send once
switched on); broadcasts (X posts) have no contacts and are left to the sample checks.

The rehearsal also counts, per campaign, the contact locales it reaches, for the language check
(:mod:`engine.render.locale_checks`).

Cost, measured on the 5,000-contact demo store: one grouping query per campaign (~10 ms) and
~9 ms per rehearsed contact (the planner's per-contact SELECTs dominate), so the shipped 15
campaigns at most 12 contacts each stay near a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.engine import Connection, Engine

from engine.errors import Problem
from engine.message import EmailMessage, SocialPost
from engine.render.checks import expression_context, expression_failure, expression_sites, located
from engine.render.errors import RenderError
from engine.render.renderer import Renderer
from engine.runtime.compose import compose_email, placeholder_coupon
from engine.runtime.contact_view import contact_view
from engine.runtime.delivery_locale import delivery_locale
from engine.runtime.message_context import message_context
from engine.runtime.occurrences import Occurrence, current_occurrence, due_occurrences
from engine.runtime.planner import PlanError, draft_plan
from engine.settings import Settings
from engine.store.models import Contact, GiftCard, ShopEvent, ShopOrder
from engine.workspace.expressions import evaluate
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign, SendStep, Status

CONTACT = Contact.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]
CARD = GiftCard.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
PER_CAMPAIGN = 12
HORIZON = timedelta(days=400)


@dataclass
class Rehearsal:
    """What the rehearsal found, and what it saw of the audiences."""

    problems: list[Problem] = field(default_factory=list)
    #: Per campaign id: the locales of the contacts it reaches, and how many have each.
    reached: dict[str, dict[str, int]] = field(default_factory=dict)
    contacts: int = 0  # contacts rehearsed, over all campaigns


def _occurrence(campaign: Campaign, workspace: Workspace, settings: Settings, now: datetime) -> Occurrence:
    """The occurrence in effect at ``now`` (as ``contact_view`` picks it): the latest fire, else the next."""
    current = current_occurrence(campaign, now, workspace.schedules, default_zone=settings.zone)
    if current.kind != "manual" or campaign.trigger.event is not None:
        return current
    upcoming = due_occurrences(
        campaign, workspace.schedules, now, now + HORIZON, default_zone=settings.zone, include_inactive=True
    )
    return upcoming[0] if upcoming else current


def representatives(
    conn: Connection, workspace: Workspace, campaign: Campaign, settings: Settings, now: datetime, limit: int
) -> tuple[list[int], dict[str, int]]:
    """Up to ``limit`` contacts the campaign reaches, one per shape of data, and its locales' counts."""
    occurrence = _occurrence(campaign, workspace, settings, now)
    try:
        draft = draft_plan(conn, workspace, campaign, occurrence, settings=settings, now=now)
    except PlanError:
        return [], {}
    cells = [cell.condition for cell in draft.cells if cell.excluded is None]
    condition = and_(draft.selected, or_(false(), *cells))
    event = campaign.trigger.event
    if event is not None:
        condition = and_(
            condition,
            exists().where(EVENT.c.contact_id == CONTACT.c.id, EVENT.c.type == str(event.type)),
        )
    has_order = exists().where(ORDER.c.contact_id == CONTACT.c.id)
    has_card = exists().where(CARD.c.recipient_contact_id == CONTACT.c.id, CARD.c.balance > 0)
    shapes = conn.execute(
        select(
            func.min(CONTACT.c.id),
            CONTACT.c.locale,
            CONTACT.c.country,
            has_order.label("has_order"),
            has_card.label("has_card"),
            func.count(),
        )
        .where(condition)
        .group_by(CONTACT.c.locale, CONTACT.c.country, has_order, has_card)
        .order_by(func.count().desc())
    ).all()
    locales: Counter[str] = Counter()
    for _id, locale, _country, _order, _card, count in shapes:
        locales[locale or ""] += int(count)
    return _diverse([(int(row[0]), tuple(row[1:5])) for row in shapes], limit), dict(locales)


def _diverse(shapes: list[tuple[int, tuple[Any, ...]]], limit: int) -> list[int]:
    """Contacts that each bring a value of some dimension not seen yet first, then the most common others."""
    chosen: list[int] = []
    seen: list[set[Any]] = [set() for _ in range(4)]
    rest: list[int] = []
    for contact_id, values in shapes:
        if any(value not in seen[i] for i, value in enumerate(values)):
            chosen.append(contact_id)
            for i, value in enumerate(values):
                seen[i].add(value)
        else:
            rest.append(contact_id)
    return (chosen + rest)[:limit]


def _as_active(campaign: Campaign) -> Campaign:
    """A draft or paused campaign as it will be once switched on (its source kept for the lines)."""
    if campaign.status == Status.active:
        return campaign
    active = campaign.model_copy(update={"status": Status.active})
    active.attach_source(campaign.source)
    return active


def rehearse(
    engine: Engine,
    workspace: Workspace,
    settings: Settings,
    renderer: Renderer,
    *,
    now: datetime,
    per_campaign: int = PER_CAMPAIGN,
) -> Rehearsal:
    """The rehearsal of the module docstring over every per-contact campaign of ``workspace``."""
    result = Rehearsal()
    seen: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        for original in workspace.campaigns.values():
            if original.is_broadcast:
                continue
            campaign = _as_active(original)
            ids, locales = representatives(conn, workspace, campaign, settings, now, per_campaign)
            result.reached[campaign.key] = locales
            for contact_id in ids:
                result.contacts += 1
                found = _rehearse_contact(conn, workspace, campaign, contact_id, settings, renderer, now)
                for problem in found:
                    key = (str(problem.location), problem.message.rsplit(" (contact ", 1)[0])
                    if key not in seen:
                        seen.add(key)
                        result.problems.append(problem)
    return result


def _rehearse_contact(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    contact_id: int,
    settings: Settings,
    renderer: Renderer,
    now: datetime,
) -> list[Problem]:
    at = _latest_event(conn, campaign, contact_id)
    view = contact_view(conn, workspace, campaign, None, contact_id, settings=settings, now=now, at=at)
    shared = _SharedCompile(renderer)
    contact = view.contact
    who = f"contact {contact.email}, id {contact_id}"
    problems: list[Problem] = []
    plain = replace(view.facts, coupon=None)
    for site in expression_sites(campaign):
        context = message_context(settings, campaign, plain, view.data, contact_id=contact_id, now=view.now)
        try:
            evaluate(site.source, expression_context(campaign, context, site))
        except Exception as exc:  # noqa: BLE001 — whatever the sandbox raises is the finding
            problems.append(_for_contact(expression_failure(site, exc, "with a real contact"), who))
    for step in campaign.iter_steps():
        if not isinstance(step, SendStep):
            continue
        coupon = placeholder_coupon(campaign, step, view.plan.instant or view.now)
        facts = plain.with_coupon(coupon) if coupon is not None else plain
        locale = delivery_locale(contact.locale, campaign.forced_locales(step))
        for template in step.templates():
            try:
                compose_email(
                    shared,
                    settings,
                    campaign,
                    template=template,
                    step_id=step.step_id,
                    contact_id=contact_id,
                    locale=locale,
                    marketing=campaign.category.value != "transactional",
                    facts=facts,
                    data=view.data,
                    now=view.now,
                )
            except RenderError as exc:
                where = f"{who}, campaign {campaign.key!r}, step {step.step_id!r}"
                problems.append(_for_contact(located(exc, renderer, template, locale), where))
    return problems


def _latest_event(conn: Connection, campaign: Campaign, contact_id: int) -> datetime | None:
    """For an event trigger, when the contact's latest such event happened: the message is rendered then,
    with that event, as the flow renders it (at ``now`` there may be no event yet: season data)."""
    event = campaign.trigger.event
    if event is None:
        return None
    found = conn.execute(
        select(EVENT.c.occurred_at)
        .where(EVENT.c.contact_id == contact_id, EVENT.c.type == str(event.type))
        .order_by(EVENT.c.occurred_at.desc(), EVENT.c.id.desc())
        .limit(1)
    ).scalar()
    return found if isinstance(found, datetime) else None


def _for_contact(problem: Problem, who: str) -> Problem:
    return Problem(problem.location, f"{problem.message} ({who})", problem.severity)


class _SharedCompile:
    """The check's renderer for :func:`compose_email`, compiling each template and locale once.

    A send compiles per campaign step, because the step is baked into the links' UTM parameters;
    a rehearsal looks for failures, which the UTM parameters cannot cause, so it renders with the
    compilations the sample checks already made (a compile costs ~100 ms, a render ~0.1 ms).
    """

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def render_email(self, template: str, context: Mapping[str, Any], **options: Any) -> EmailMessage:
        options.update(campaign_id=None, step_id=None)
        return self.renderer.render_email(template, context, **options)

    def render_post(self, template: str, context: Mapping[str, Any], **options: Any) -> SocialPost:
        options.update(campaign_id=None)
        return self.renderer.render_post(template, context, **options)


__all__ = ["PER_CAMPAIGN", "Rehearsal", "rehearse", "representatives"]
