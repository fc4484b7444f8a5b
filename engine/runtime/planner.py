"""The planner: one trigger occurrence → idempotent outbox rows, enrolments or posts, in SQL.

A campaign with a single ``send`` step writes ``delivery`` rows directly; a flow (waits,
ifs, coupons, several sends) writes ``enrolment`` rows that the flow stepper advances; a
broadcast (``post`` steps, no audience) writes one ``post`` row per step. Every write is
``INSERT … SELECT … ON CONFLICT DO NOTHING`` on the row's unique key, so planning the same
occurrence twice — a restart, two schedulers racing, ``tidings trigger`` run again — never
makes a second row, and no contact id ever travels through Python.

Per-contact send times: the audience is split into a few *cells* — groups of contacts that
share a send instant. The planner asks the store for the distinct (time zone, country,
shipping method) combinations in the audience (a handful, however large the audience),
computes each one's instant in Python (local 09:00 in that zone, the shipping cutoff of that
country and method, the next day that is not a public holiday there), then writes one
``INSERT … SELECT`` per distinct instant. :func:`draft_plan` builds the cells; the planner
writes them and ``tidings plan`` counts them (a dry run: the same SELECTs, nothing written).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, String, and_, cast, false, func, literal, not_, or_, select, true, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from engine.audience import (
    CONTACT,
    AudienceContext,
    audience_filters,
    compile_filters,
    consent_channels,
    consent_clause,
    consent_granted,
    strip_consent,
    suppressed,
)
from engine.clock import Clock
from engine.errors import TidingsError
from engine.runtime import variants as ab
from engine.runtime.local_time import local_instant, skip_holidays, zone_or
from engine.runtime.occurrences import (
    CutoffRow,
    Occurrence,
    cutoff_day,
    cutoff_rows,
    default_method,
    event_occurrence,
    is_active,
)
from engine.runtime.related import related_order_and_card
from engine.settings import Settings
from engine.store.models import Contact, Delivery, Enrolment, GiftCard, Post, ShopEvent, ShopOrder
from engine.store.types import JSONType, UTCDateTime

LOG = logging.getLogger(__name__)
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
POST = Post.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]


class PlanError(TidingsError):
    """A campaign that cannot be planned as asked (e.g. a segment that does not exist)."""


@dataclass
class PlanStats:
    """What planning one occurrence did. ``created`` counts new rows; re-planning adds none."""

    campaign: str
    occurrence: str
    mode: str  # deliveries | enrolments | posts
    created: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None  # why nothing was planned at all (draft, paused, outside_window)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "occurrence": self.occurrence,
            "mode": self.mode,
            "created": self.created,
            "excluded": dict(self.excluded),
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class Cell:
    """Contacts of the audience that share one send instant (or one reason to be left out)."""

    condition: ColumnElement[bool]
    instant: datetime | None
    excluded: str | None = None


@dataclass
class Draft:
    """Everything a plan needs, before anything is written: the SELECTs the planner and ``plan`` share."""

    campaign: Any
    occurrence: Occurrence
    mode: str
    audience: ColumnElement[bool]  # segment AND where
    eligible: ColumnElement[bool]  # consent / suppression for the campaign's category
    cells: list[Cell]
    reference: datetime
    skipped: str | None = None

    @property
    def selected(self) -> ColumnElement[bool]:
        return and_(self.audience, self.eligible)


# --- the campaign's shape ---------------------------------------------------------------------------


def plan_mode(campaign: Any) -> str:
    """``posts`` for broadcasts, ``deliveries`` for one send step, ``enrolments`` for flows and events."""
    if campaign.is_broadcast:
        return "posts"
    steps = list(campaign.steps)
    if campaign.trigger.kind != "event" and len(steps) == 1 and getattr(steps[0], "kind", "") == "send":
        return "deliveries"
    return "enrolments"


def send_variants(step: Any) -> list[ab.Variant]:
    """A send step's templates as variants (one variant, labelled None in the outbox, when not A/B)."""
    spec = step.send
    if spec.variants:
        return [
            ab.Variant(label=v.template, template=v.template, weight=float(v.weight)) for v in spec.variants
        ]
    return [ab.Variant(label="", template=spec.template, weight=1.0)]


def first_channel(campaign: Any) -> str:
    for step in campaign.iter_steps():
        if getattr(step, "kind", "") == "send":
            return str(step.send.channel)
    return "email"


def _category(campaign: Any) -> str:
    return str(getattr(campaign.category, "value", campaign.category))


def segment_where(workspace: Any, name: str | None) -> Any:
    """The ``where`` list of a named segment from the workspace."""
    if name is None:
        return []
    segments = getattr(workspace, "segments", None)
    segments = getattr(segments, "segments", segments)
    if isinstance(segments, Mapping) and name in segments:
        segment = segments[name]
        return getattr(segment, "where", segment.get("where") if isinstance(segment, Mapping) else None)
    raise PlanError(f"unknown segment {name!r}")


def campaign_filters(workspace: Any, campaign: Any) -> list[Any]:
    """The segment's and the campaign's ``where`` items, as one ANDed list."""
    audience = campaign.audience
    if audience is None:
        return []
    return audience_filters(segment_where(workspace, audience.segment), audience.where)


def eligibility(campaign: Any, filters: Any = ()) -> ColumnElement[bool]:
    """Who may receive this campaign at all: marketing needs consent and no unsubscribe; nobody
    hard-bounced, spam-reporting, manually blocked or forgotten gets anything. (When the audience
    already says ``consent: CHANNEL`` the clause is not repeated.)"""
    channel = first_channel(campaign)
    if _category(campaign) == "transactional":
        return not_(suppressed(channel, "transactional"))
    if channel in consent_channels(filters):
        return true()  # the audience's consent clause already excludes every marketing suppression
    return consent_clause(channel)


def audience_condition(workspace: Any, campaign: Any, ctx: AudienceContext) -> ColumnElement[bool]:
    if campaign.audience is None:
        return true()
    return compile_filters(campaign_filters(workspace, campaign), ctx)


# --- cells: who is sent when -------------------------------------------------------------------------


def last_order_method() -> ColumnElement[str]:
    """The shipping method of the contact's latest order (correlated; NULL without orders)."""
    return (
        select(ORDER.c.shipping_method)
        .where(ORDER.c.contact_id == CONTACT.c.id)
        .order_by(ORDER.c.placed_at.desc(), ORDER.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _cutoff_for(rows: list[CutoffRow], country: str, method: str, fallback: str) -> CutoffRow | None:
    """The contact's row: their method's for their country, else the default method's; None when
    their country has neither (DESIGN.md: such contacts are excluded, and ``plan`` says so)."""
    for wanted in (method, fallback):
        for row in rows:
            if row.country == country and row.method == wanted:
                return row
    return None


def _window_ok(campaign: Any, instant: datetime, zone: ZoneInfo) -> bool:
    window = getattr(campaign, "window", None)
    return window is None or bool(window.start <= instant.astimezone(zone).date() <= window.end)


def _occurrence_in_window(campaign: Any, occurrence: Occurrence, zone: ZoneInfo) -> bool:
    """A global occurrence's date (its wall date for local_time fires) inside the campaign window."""
    window = getattr(campaign, "window", None)
    if window is None:
        return True
    local = occurrence.local
    day = local.date() if local is not None else occurrence.fire_at.astimezone(zone).date()
    return bool(window.start <= day <= window.end)


def _campaign_zone(campaign: Any, settings: Settings) -> ZoneInfo:
    return campaign.zone if getattr(campaign, "timezone", None) else settings.zone


def draft_plan(
    conn: Connection,
    workspace: Any,
    campaign: Any,
    occurrence: Occurrence,
    *,
    settings: Settings,
    now: datetime,
    due_now: bool = False,
) -> Draft:
    """Build the plan's SELECTs: the audience, the eligibility and the send-time cells."""
    zone = _campaign_zone(campaign, settings)
    reference = now if due_now else occurrence.fire_at
    ctx = AudienceContext(reference=reference, zone=zone)
    mode = plan_mode(campaign)
    audience = audience_condition(workspace, campaign, ctx)
    eligible = true() if mode == "posts" else eligibility(campaign, campaign_filters(workspace, campaign))
    draft = Draft(campaign, occurrence, mode, audience, eligible, [], reference)
    if mode == "posts":
        instant = now if due_now else occurrence.fire_at
        draft.cells = [Cell(true(), instant)]
        if not _window_ok(campaign, instant, zone) and occurrence.local is None:
            draft.skipped = "outside_window"
        return draft
    draft.cells = _cells(conn, draft, workspace, settings, zone, now, due_now)
    return draft


def _cells(
    conn: Connection,
    draft: Draft,
    workspace: Any,
    settings: Settings,
    zone: ZoneInfo,
    now: datetime,
    due_now: bool,
) -> list[Cell]:
    campaign, occurrence = draft.campaign, draft.occurrence
    holidays = bool(getattr(campaign.limits, "skip_public_holidays", False))
    per_contact = occurrence.per_contact_date
    local = occurrence.local_time
    tz_key = func.coalesce(CONTACT.c.timezone, literal(""))
    country_key = func.coalesce(CONTACT.c.country, literal(""))
    schedules = getattr(workspace, "schedules", workspace)
    fallback = default_method(schedules) if per_contact else ""
    method_key = func.coalesce(last_order_method(), literal(fallback)) if per_contact else literal("")
    needs_zone = local and not due_now
    needs_country = per_contact or (holidays and not due_now)  # `trigger` sends now, holiday or not
    needs_method = per_contact  # contacts without a cutoff stay out even when sent now

    if due_now:
        day = now.astimezone(zone).date()
        if getattr(campaign, "window", None) is not None and not campaign.window.contains(day):
            return [Cell(true(), None, "outside_window")]
        if not needs_country:
            return [Cell(true(), now)]
    elif not per_contact and not _occurrence_in_window(campaign, occurrence, zone):
        return [Cell(true(), None, "outside_window")]
    elif not (needs_zone or needs_country or needs_method):
        return [Cell(true(), occurrence.fire_at)]

    columns: list[Any] = [tz_key, country_key, method_key]
    rows = conn.execute(select(*columns).where(draft.selected).distinct()).all()
    cutoffs = cutoff_rows(schedules) if needs_method else []
    by_instant: dict[datetime | str, list[tuple[str, str, str]]] = defaultdict(list)
    for tz_name, country, method in rows:
        contact_zone = zone_or(tz_name, settings.zone)
        outcome = _instant_for(
            campaign,
            occurrence,
            zone,
            contact_zone,
            country,
            method,
            cutoffs,
            fallback,
            now if due_now else None,
        )
        if isinstance(outcome, datetime) and holidays and not due_now:
            outcome = skip_holidays(outcome, contact_zone, country or None)
        if (
            isinstance(outcome, datetime)
            and per_contact
            and not due_now
            and not _window_ok(campaign, outcome, zone)
        ):
            outcome = "outside_window"
        by_instant[outcome].append((tz_name, country, method))
    cells = []
    for outcome, keys in sorted(by_instant.items(), key=lambda item: str(item[0])):
        condition = tuple_(tz_key, country_key, method_key).in_(keys)
        if isinstance(outcome, datetime):
            cells.append(Cell(condition, outcome))
        else:
            cells.append(Cell(condition, None, outcome))
    return cells


def _instant_for(
    campaign: Any,
    occurrence: Occurrence,
    zone: ZoneInfo,
    contact_zone: ZoneInfo,
    country: str,
    method: str,
    cutoffs: list[CutoffRow],
    fallback: str,
    now: datetime | None,
) -> datetime | str:
    """One group's send instant, or the reason it is left out."""
    send_zone = contact_zone if occurrence.local_time else zone
    if occurrence.per_contact_date:
        row = _cutoff_for(cutoffs, country, method, fallback)
        if row is None:
            return "no_cutoff"
        if now is not None:
            return now
        at = occurrence.at or row.order_by.astimezone(row.zone).time()
        return local_instant(cutoff_day(row, occurrence.offset_days or 0), at, send_zone)
    if now is not None:
        return now
    if occurrence.local is not None:
        wall = occurrence.local
        return local_instant(wall.date(), wall.time(), send_zone)
    return occurrence.fire_at


# --- writing -------------------------------------------------------------------------------------------


def _insert(conn: Connection, table: Any) -> Any:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def _key(*parts: Any) -> ColumnElement[str]:
    """``a:b:c`` concatenated in SQL (``||`` on both dialects)."""
    expression: ColumnElement[str] = literal("", String())
    for index, part in enumerate(parts):
        piece = cast(part, String()) if isinstance(part, ColumnElement) else literal(str(part), String())
        expression = expression + (literal(":", String()) + piece if index else piece)
    return expression


def _stamp(moment: datetime) -> ColumnElement[datetime]:
    return literal(moment, UTCDateTime())


def _json_empty() -> ColumnElement[Any]:
    return literal({}, JSONType)


def _delivery_select(draft: Draft, cell: Cell, step: Any, now: datetime) -> Any:
    campaign_id = draft.campaign.key
    choices = send_variants(step)
    template = ab.choose_sql(CONTACT.c.id, campaign_id, choices, "template")
    variant = (
        ab.choose_sql(CONTACT.c.id, campaign_id, choices, "label")
        if len(choices) > 1
        else literal(None, String())
    )
    assert cell.instant is not None
    return select(
        _key(campaign_id, step.step_id, CONTACT.c.id, draft.occurrence.key).label("idempotency_key"),
        literal(campaign_id, String()).label("campaign_id"),
        literal(step.step_id, String()).label("step_id"),
        CONTACT.c.id.label("contact_id"),
        literal(str(step.send.channel), String()).label("channel"),
        literal(_category(draft.campaign), String()).label("category"),
        template.label("template"),
        CONTACT.c.locale.label("locale"),
        variant.label("variant"),
        literal(draft.occurrence.key, String()).label("occurrence"),
        _stamp(cell.instant).label("scheduled_for"),
        literal("pending", String()).label("state"),
        literal(0, Integer()).label("attempts"),
        _stamp(now).label("created_at"),
        _json_empty().label("context"),
    ).where(cell.condition, draft.selected)


DELIVERY_COLUMNS = (
    "idempotency_key",
    "campaign_id",
    "step_id",
    "contact_id",
    "channel",
    "category",
    "template",
    "locale",
    "variant",
    "occurrence",
    "scheduled_for",
    "state",
    "attempts",
    "created_at",
    "context",
)
ENROLMENT_COLUMNS = (
    "campaign_id",
    "contact_id",
    "occurrence",
    "state",
    "step_path",
    "wake_at",
    "variants",
    "context",
    "created_at",
    "updated_at",
)


def _enrolment_select(draft: Draft, cell: Cell, now: datetime) -> Any:
    assert cell.instant is not None
    return select(
        literal(draft.campaign.key, String()),
        CONTACT.c.id,
        literal(draft.occurrence.key, String()),
        literal("active", String()),
        literal(draft.campaign.first_path(), String()),
        _stamp(cell.instant),
        _json_empty(),
        _json_empty(),
        _stamp(now),
        _stamp(now),
    ).where(cell.condition, draft.selected)


def count_cell(conn: Connection, draft: Draft, cell: Cell) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(CONTACT).where(cell.condition, draft.selected)
        ).scalar_one()
    )


def write_plan(conn: Connection, draft: Draft, now: datetime) -> PlanStats:
    """Write the draft's rows (idempotently) and return what was created and left out."""
    stats = PlanStats(draft.campaign.key, draft.occurrence.key, draft.mode, skipped=draft.skipped)
    if draft.skipped:
        return stats
    if draft.mode == "posts":
        return _write_posts(conn, draft, now, stats)
    for cell in draft.cells:
        if cell.excluded is not None:
            stats.excluded[cell.excluded] = stats.excluded.get(cell.excluded, 0) + count_cell(
                conn, draft, cell
            )
            continue
        if draft.mode == "deliveries":
            step = draft.campaign.steps[0]
            statement = _insert(conn, DELIVERY).from_select(
                DELIVERY_COLUMNS, _delivery_select(draft, cell, step, now)
            )
            statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
        else:
            statement = _insert(conn, ENROLMENT).from_select(
                ENROLMENT_COLUMNS, _enrolment_select(draft, cell, now)
            )
            statement = statement.on_conflict_do_nothing(
                index_elements=["campaign_id", "contact_id", "occurrence"]
            )
        stats.created += max(
            int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount or 0), 0
        )
    return stats


def _write_posts(conn: Connection, draft: Draft, now: datetime, stats: PlanStats) -> PlanStats:
    (cell,) = draft.cells
    assert cell.instant is not None
    for step in draft.campaign.iter_steps():
        if getattr(step, "kind", "") != "post":
            continue
        row = {
            "idempotency_key": f"{draft.campaign.key}:{step.step_id}:{draft.occurrence.key}",
            "campaign_id": draft.campaign.key,
            "step_id": step.step_id,
            "channel": str(step.post.channel),
            "template": step.post.template,
            "occurrence": draft.occurrence.key,
            "scheduled_for": cell.instant,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
        }
        statement = (
            _insert(conn, POST).values(**row).on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        stats.created += max(
            int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount or 0), 0
        )
    return stats


def plan_occurrence(
    engine: Engine,
    workspace: Any,
    campaign: Any,
    occurrence: Occurrence,
    *,
    clock: Clock,
    settings: Settings,
    due_now: bool = False,
    fence: Callable[[Connection], None] | None = None,
) -> PlanStats:
    """Plan one occurrence of ``campaign``: rows due at each contact's time (or now with ``due_now``).

    Draft and paused campaigns plan nothing (``skipped`` says why); planning is one transaction.
    ``fence`` runs last in it, before the commit: raising there (a daemon that lost the lead)
    rolls the whole plan back.
    """
    mode = plan_mode(campaign)
    if not is_active(campaign):
        status = str(getattr(campaign.status, "value", campaign.status))
        return PlanStats(campaign.key, occurrence.key, mode, skipped=status)
    now = clock.now()
    with engine.begin() as conn:
        draft = draft_plan(conn, workspace, campaign, occurrence, settings=settings, now=now, due_now=due_now)
        stats = write_plan(conn, draft, now)
        if fence is not None:
            fence(conn)
        return stats


# --- events --------------------------------------------------------------------------------------------


def _event_context(
    conn: Connection, event: Any, contact: Any, campaign: Any, now: datetime, settings: Settings
) -> dict[str, Any]:
    """The template context a trigger's ``where`` sees: the event, its order or gift card (by the ids in
    its payload, else the contact's latest order and latest card with a balance) — as the flow stepper
    builds it for ``if`` steps, so one expression means the same in both places."""
    from engine.render.context import build_context

    order, card = related_order_and_card(conn, contact["id"], event)
    return build_context(
        settings,
        contact=Contact.model_validate(dict(contact)),
        now=now,
        campaign={"id": campaign.key, "name": campaign.name},
        occurrence=event.occurred_at,
        order=ShopOrder.model_validate(dict(order._mapping)) if order is not None else None,
        gift_card=GiftCard.model_validate(dict(card._mapping)) if card is not None else None,
        event=ShopEvent.model_validate(dict(event._mapping)),
    )


def _matches(
    where: str, conn: Connection, event: Any, contact: Any, campaign: Any, now: datetime, settings: Settings
) -> bool:
    """The trigger's ``where`` over the event; an expression that fails on this event (``None > 0``)
    does not enrol, and is logged, rather than stopping every other event of the batch."""
    from engine.workspace.expressions import evaluate

    try:
        return evaluate(where, _event_context(conn, event, contact, campaign, now, settings))
    except Exception as exc:  # noqa: BLE001 — a marketer's expression, evaluated in the sandbox
        LOG.warning(
            "campaign %s: trigger where %r failed on event %s: %s", campaign.key, where, event.id, exc
        )
        return False


def enrol_for_events(
    engine: Engine, workspace: Any, event_ids: Iterable[int], clock: Clock, settings: Settings
) -> int:
    """Enrol each event's contact in every active campaign whose event trigger matches; returns how many new.

    The trigger's ``where`` is evaluated with the workspace's expression evaluator over the event
    context. ``once_per_contact`` campaigns use the occurrence ``once``, so the unique
    (campaign, contact, occurrence) key keeps a second event from enrolling the contact again.
    Contacts outside the campaign's audience or not eligible (consent, suppression) are not enrolled.
    """
    ids = sorted(set(event_ids))
    if not ids:
        return 0
    now = clock.now()
    campaigns = [c for c in _campaigns(workspace) if c.trigger.kind == "event" and is_active(c)]
    if not campaigns:
        return 0
    created = 0
    with engine.begin() as conn:
        events = conn.execute(select(EVENT).where(EVENT.c.id.in_(ids), EVENT.c.contact_id.is_not(None))).all()
        for event in events:
            contact = conn.execute(select(CONTACT).where(CONTACT.c.id == event.contact_id)).mappings().first()
            if contact is None:
                continue
            for campaign in campaigns:
                spec = campaign.trigger.spec
                if spec.type != event.type:
                    continue
                zone = _campaign_zone(campaign, settings)
                if not _window_ok(campaign, event.occurred_at, zone):
                    continue
                if spec.where and not _matches(spec.where, conn, event, contact, campaign, now, settings):
                    continue
                occurrence = event_occurrence(event.id, event.occurred_at, once=spec.once_per_contact)
                ctx = AudienceContext(reference=event.occurred_at, zone=zone)
                selected = and_(
                    CONTACT.c.id == event.contact_id,
                    audience_condition(workspace, campaign, ctx),
                    eligibility(campaign, campaign_filters(workspace, campaign)),
                )
                values = select(
                    literal(campaign.key, String()),
                    CONTACT.c.id,
                    literal(occurrence.key, String()),
                    literal(event.id, Integer()),
                    literal("active", String()),
                    literal(campaign.first_path(), String()),
                    _stamp(now),
                    _json_empty(),
                    _json_empty(),
                    _stamp(now),
                    _stamp(now),
                ).where(selected)
                columns = (
                    "campaign_id",
                    "contact_id",
                    "occurrence",
                    "event_id",
                    "state",
                    "step_path",
                    "wake_at",
                    "variants",
                    "context",
                    "created_at",
                    "updated_at",
                )
                statement = (
                    _insert(conn, ENROLMENT)
                    .from_select(columns, values)
                    .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id", "occurrence"])
                )
                created += max(
                    int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount or 0),
                    0,
                )
    return created


def _campaigns(workspace: Any) -> list[Any]:
    campaigns = getattr(workspace, "campaigns", workspace)
    if isinstance(campaigns, Mapping):
        return list(campaigns.values())
    return list(campaigns)


__all__ = [
    "Cell",
    "Draft",
    "DryRun",
    "PlannedRow",
    "dry_run",
    "PlanError",
    "PlanStats",
    "count_cell",
    "draft_plan",
    "enrol_for_events",
    "plan_mode",
    "plan_occurrence",
    "write_plan",
]


# --- the dry run (``tidings plan``) ------------------------------------------------------------------


@dataclass
class PlannedRow:
    """One contact the plan would reach, as ``tidings plan`` shows it."""

    contact_id: int
    email: str
    timezone: str
    scheduled_for: datetime
    local_time: str
    template: str | None
    locale: str | None
    variant: str | None
    step_id: str | None


@dataclass
class DryRun:
    """What planning an occurrence would do, counted with the planner's own SELECTs; nothing written."""

    campaign: str
    occurrence: Occurrence
    mode: str
    matched: int = 0  # the segment and where, consent set aside
    reach: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    breakdown: list[dict[str, Any]] = field(default_factory=list)  # locale, country, variant, count
    first_rows: list[PlannedRow] = field(default_factory=list)
    step_id: str | None = None
    skipped: str | None = None
    event_type: str | None = (
        None  # event-triggered campaigns enrol per event; the counts are today's audience
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "occurrence": self.occurrence.key,
            "fires_at": self.occurrence.fire_at.isoformat(),
            "mode": self.mode,
            "step": self.step_id,
            "matched": self.matched,
            "reach": self.reach,
            "excluded": dict(self.excluded),
            "breakdown": list(self.breakdown),
            "skipped": self.skipped,
            "event_type": self.event_type,
        }


def _count(conn: Connection, *conditions: ColumnElement[bool]) -> int:
    statement = select(func.count()).select_from(CONTACT).where(*conditions)
    return int(conn.execute(statement).scalar_one())


def _first_send(campaign: Any) -> Any:
    first = campaign.steps[0] if campaign.steps else None
    return first if getattr(first, "kind", "") == "send" else None


def _capped(campaign: Any, reference: datetime) -> ColumnElement[bool] | None:
    """Contacts already at the campaign's frequency cap of marketing messages before ``reference``."""
    cap = getattr(campaign.limits, "frequency_cap", None)
    if cap is None:
        return None
    recent = (
        select(func.count())
        .select_from(DELIVERY)
        .where(
            DELIVERY.c.contact_id == CONTACT.c.id,
            DELIVERY.c.category == "marketing",
            DELIVERY.c.state == "sent",
            DELIVERY.c.sent_at > reference - cap.per.delta,
            DELIVERY.c.sent_at <= reference,
        )
        .scalar_subquery()
    )
    return recent >= cap.max


def dry_run(
    conn: Connection,
    workspace: Any,
    campaign: Any,
    occurrence: Occurrence,
    *,
    settings: Settings,
    now: datetime,
    sample: int = 10,
) -> DryRun:
    """Count who the occurrence would reach and why others are left out, and list the first rows."""
    draft = draft_plan(conn, workspace, campaign, occurrence, settings=settings, now=now)
    result = DryRun(campaign.key, occurrence, draft.mode, skipped=draft.skipped)
    if campaign.trigger.kind == "event":
        result.event_type = str(campaign.trigger.spec.type)
    if draft.mode == "posts":
        return result
    channel = first_channel(campaign)
    zone = _campaign_zone(campaign, settings)
    ctx = AudienceContext(reference=draft.reference, zone=zone)
    filters = campaign_filters(workspace, campaign)
    base = compile_filters(strip_consent(filters), ctx)
    result.matched = _count(conn, base)
    marketing = _category(campaign) == "marketing"
    if marketing:
        granted = consent_granted(channel)
        blocked = suppressed(channel, "marketing")
        result.excluded["no_consent"] = _count(conn, base, not_(granted))
        result.excluded["suppressed"] = _count(conn, base, granted, blocked)
    else:
        result.excluded["suppressed"] = _count(conn, base, suppressed(channel, "transactional"))
    # Filters other than consent that the audience states (segment AND where) are already in base.
    included = [cell for cell in draft.cells if cell.excluded is None]
    for cell in draft.cells:
        if cell.excluded is not None:
            result.excluded[cell.excluded] = result.excluded.get(cell.excluded, 0) + count_cell(
                conn, draft, cell
            )
    reachable = or_(false(), *(cell.condition for cell in included))
    capped = _capped(campaign, draft.reference)
    if capped is not None:
        result.excluded["frequency_cap"] = _count(conn, draft.selected, reachable, capped)
        reachable = and_(reachable, not_(capped))
    result.reach = _count(conn, draft.selected, reachable)
    step = _first_send(campaign)
    variant: ColumnElement[Any] = literal(None, String())
    template: ColumnElement[Any] = literal(None, String())
    if step is not None:
        result.step_id = step.step_id
        choices = send_variants(step)
        template = ab.choose_sql(CONTACT.c.id, campaign.key, choices, "template")
        if len(choices) > 1:
            variant = ab.choose_sql(CONTACT.c.id, campaign.key, choices, "label")
    grouped = (
        select(CONTACT.c.locale, CONTACT.c.country, variant.label("variant"), func.count().label("n"))
        .where(draft.selected, reachable)
        .group_by(CONTACT.c.locale, CONTACT.c.country, variant)
        .order_by(func.count().desc())
    )
    result.breakdown = [
        {"locale": loc, "country": country, "variant": var, "count": int(n)}
        for loc, country, var, n in conn.execute(grouped)
    ]
    for cell in included:
        if len(result.first_rows) >= sample:
            break
        assert cell.instant is not None
        rows = conn.execute(
            select(CONTACT.c.id, CONTACT.c.email, CONTACT.c.timezone, CONTACT.c.locale, template, variant)
            .where(draft.selected, cell.condition, *([not_(capped)] if capped is not None else []))
            .order_by(CONTACT.c.id)
            .limit(sample - len(result.first_rows))
        )
        for contact_id, email, tz_name, locale, chosen, label in rows:
            contact_zone = zone_or(tz_name, settings.zone)
            local = cell.instant.astimezone(contact_zone)
            result.first_rows.append(
                PlannedRow(
                    contact_id,
                    email,
                    contact_zone.key,
                    cell.instant,
                    local.strftime("%Y-%m-%d %H:%M %Z"),
                    chosen,
                    locale,
                    label,
                    result.step_id,
                )
            )
    return result
