"""The planner: one trigger occurrence → idempotent outbox rows, enrolments or posts, in SQL.

A campaign with a single ``send`` step writes ``delivery`` rows directly; a flow (waits,
ifs, coupons, several sends) writes ``enrolment`` rows that the flow stepper advances; a
broadcast (``post`` steps, no audience) writes one ``post`` row per step. Every write is
``INSERT … SELECT … ON CONFLICT DO NOTHING`` on the row's unique key, so planning the same
occurrence twice — a restart, two schedulers racing, ``tidings trigger`` run again — never
makes a second row, and no contact id ever travels through Python.

Per-contact send times and facts: the audience is split into a few *cells* — groups of contacts
that share a send instant and the facts a message is rendered from (:class:`MessageFacts`: the
zone used, the shipping cutoff, the trigger date, the occurrence moment). The planner asks the
store for the distinct (time zone, country, shipping method) combinations in the audience (a
handful, however large the audience), decides each one's zone (:mod:`engine.runtime.zones`),
instant (local 09:00 there, the cutoff of that country and method, the next day that is not a
public holiday) and facts in Python, then writes one ``INSERT … SELECT`` per cell with the facts
as a JSON literal. The dispatcher renders from those facts and never decides them again.

Holdouts and A/B tests split each cell once more, by stable hashes (:mod:`engine.runtime.splits`):
a campaign's ``holdout`` share is written as ``skipped`` rows with reason ``holdout`` (deliveries)
or enrolments ended ``exited``/``holdout`` (flows), so ``stats`` counts them and planned still adds
up; a send step's ``test`` slice gets its variants at the cell's instant, and the rest is written
at the instant + ``decide_after``, awaiting the winner (:mod:`engine.runtime.ab_tests`), with the
test recorded in ``ab_test`` in the same transaction.

:func:`draft_plan` builds the cells; :func:`write_plan` writes them; ``tidings plan``
(:mod:`engine.runtime.dry_run`) counts them, and :func:`plan_contact` answers for one contact
(``render --contact --campaign``, the preview's contact picker) with the very same cells.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, String, Table, and_, func, literal, not_, select, true, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Executable, Select
from sqlalchemy.sql.elements import ColumnElement

from engine.audience import (
    CONTACT,
    AudienceContext,
    audience_filters,
    compile_filters,
    consent_channels,
    consent_clause,
    suppressed,
)
from engine.clock import Clock
from engine.errors import TidingsError
from engine.runtime import variants as ab
from engine.runtime.ab_tests import record_test
from engine.runtime.claims import AWAITING_TEST
from engine.runtime.delivery_locale import delivery_locale_sql
from engine.runtime.facts import MessageFacts
from engine.runtime.keys import delivery_key_sql, message_token_sql, post_key
from engine.runtime.local_time import local_instant, skip_holidays
from engine.runtime.occurrences import Occurrence, campaign_zone, cutoff_day, is_active
from engine.runtime.splits import (
    HOLDOUT,
    holdout_sql,
    in_holdout,
    in_test_slice,
    send_variants,
    step_test,
    test_slice_sql,
)
from engine.runtime.zones import resolve_zone
from engine.settings import Settings
from engine.store.dialect import insert_for
from engine.store.models import Delivery, Enrolment, Post, ShopOrder
from engine.store.types import JSONType, UTCDateTime
from engine.workspace.filters import Filter
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign, SendStep
from engine.workspace.schedules import Cutoff

LOG = logging.getLogger(__name__)
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]
ORDER: Table = ShopOrder.__table__  # type: ignore[attr-defined]

Mode = Literal["deliveries", "enrolments", "posts"]


class PlanError(TidingsError):
    """A campaign that cannot be planned as asked (e.g. a segment that does not exist)."""


@dataclass
class PlanStats:
    """What planning one occurrence did. ``created`` counts new rows; re-planning adds none."""

    campaign: str
    occurrence: str
    mode: Mode
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
    """Contacts of the audience that share one send instant and one set of facts (or one reason to
    be left out)."""

    condition: ColumnElement[bool]
    instant: datetime | None
    facts: MessageFacts = field(default_factory=MessageFacts)
    excluded: str | None = None


@dataclass
class Draft:
    """Everything a plan needs, before anything is written: the SELECTs the planner and ``plan`` share."""

    campaign: Campaign
    occurrence: Occurrence
    mode: Mode
    audience: ColumnElement[bool]  # segment AND where
    eligible: ColumnElement[bool]  # consent / suppression for the campaign's category
    cells: list[Cell]
    reference: datetime
    skipped: str | None = None

    @property
    def selected(self) -> ColumnElement[bool]:
        return and_(self.audience, self.eligible)


# --- the campaign's shape ---------------------------------------------------------------------------


def plan_mode(campaign: Campaign) -> Mode:
    """``posts`` for broadcasts, ``deliveries`` for one send step, ``enrolments`` for flows and events."""
    if campaign.is_broadcast:
        return "posts"
    steps = campaign.steps
    if campaign.trigger.kind != "event" and len(steps) == 1 and isinstance(steps[0], SendStep):
        return "deliveries"
    return "enrolments"


def first_channel(campaign: Campaign) -> str:
    for step in campaign.iter_steps():
        if isinstance(step, SendStep):
            return str(step.send.channel)
    return "email"


def category(campaign: Campaign) -> str:
    return campaign.category.value


def campaign_filters(workspace: Workspace, campaign: Campaign) -> list[Filter]:
    """The segment's and the campaign's ``where`` items, as one ANDed list."""
    audience = campaign.audience
    if audience is None:
        return []
    segment: list[Filter] = []
    if audience.segment is not None:
        found = workspace.segments.get(audience.segment)
        if found is None:
            raise PlanError(f"unknown segment {audience.segment!r}")
        segment = list(found.where)
    return audience_filters(segment, audience.where)


def eligibility(campaign: Campaign, filters: list[Filter]) -> ColumnElement[bool]:
    """Who may receive this campaign at all: marketing needs consent and no unsubscribe; nobody
    hard-bounced, spam-reporting, manually blocked or forgotten gets anything. (When the audience
    already says ``consent: CHANNEL`` the clause is not repeated.)"""
    channel = first_channel(campaign)
    if category(campaign) == "transactional":
        return not_(suppressed(channel, "transactional"))
    if channel in consent_channels(filters):
        return true()  # the audience's consent clause already excludes every marketing suppression
    return consent_clause(channel)


def audience_condition(workspace: Workspace, campaign: Campaign, ctx: AudienceContext) -> ColumnElement[bool]:
    if campaign.audience is None:
        return true()
    return compile_filters(campaign_filters(workspace, campaign), ctx)


# --- cells: who is sent when, from which facts ---------------------------------------------------------


def last_order_method() -> ColumnElement[str]:
    """The shipping method of the contact's latest order (correlated; NULL without orders)."""
    return (
        select(ORDER.c.shipping_method)
        .where(ORDER.c.contact_id == CONTACT.c.id)
        .order_by(ORDER.c.placed_at.desc(), ORDER.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _in_window(campaign: Campaign, day: date) -> bool:
    return campaign.window is None or campaign.window.contains(day)


def draft_plan(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    occurrence: Occurrence,
    *,
    settings: Settings,
    now: datetime,
    due_now: bool = False,
    only: ColumnElement[bool] | None = None,
) -> Draft:
    """Build the plan's SELECTs: the audience, the eligibility and the cells.

    ``only`` narrows the audience (one contact, for :func:`plan_contact`); the cells are then
    computed exactly as for the whole audience.
    """
    zone = campaign_zone(campaign, settings.zone)
    reference = now if due_now else occurrence.fire_at
    ctx = AudienceContext(reference=reference, zone=zone)
    mode = plan_mode(campaign)
    audience = audience_condition(workspace, campaign, ctx)
    if only is not None:
        audience = and_(audience, only)
    eligible = true() if mode == "posts" else eligibility(campaign, campaign_filters(workspace, campaign))
    draft = Draft(campaign, occurrence, mode, audience, eligible, [], reference)
    if mode == "posts":
        instant = now if due_now else occurrence.fire_at
        facts = MessageFacts(
            occurrence_at=instant,
            zone=zone.key,
            zone_source="campaign",
            trigger_date=occurrence.trigger_date,
        )
        draft.cells = [Cell(true(), instant, facts)]
        if occurrence.local is None and not _in_window(campaign, instant.astimezone(zone).date()):
            draft.skipped = "outside_window"
        return draft
    draft.cells = _cells(conn, draft, workspace, settings, zone, now if due_now else None)
    return draft


def _occurrence_in_window(
    campaign: Campaign, occurrence: Occurrence, zone: ZoneInfo, now: datetime | None
) -> bool:
    """Whether the occurrence's day (today for a send now, the wall date of a local fire) is inside
    the window; per-contact dates are checked group by group instead (their days differ)."""
    if now is not None:
        return _in_window(campaign, now.astimezone(zone).date())
    if occurrence.per_contact_date:
        return True
    if occurrence.local is not None:
        return _in_window(campaign, occurrence.local.date())
    return _in_window(campaign, occurrence.fire_at.astimezone(zone).date())


@dataclass(frozen=True, slots=True)
class _Group:
    """One distinct (stored zone, country, shipping method) of the audience."""

    tz_name: str
    country: str
    method: str


def _cells(
    conn: Connection,
    draft: Draft,
    workspace: Workspace,
    settings: Settings,
    zone: ZoneInfo,
    now: datetime | None,
) -> list[Cell]:
    campaign, occurrence = draft.campaign, draft.occurrence
    if not _occurrence_in_window(campaign, occurrence, zone, now):
        return [Cell(true(), None, excluded="outside_window")]
    per_contact = occurrence.per_contact_date
    schedules = workspace.schedules
    fallback = schedules.default_method or "standard"
    tz_key = func.coalesce(CONTACT.c.timezone, literal(""))
    country_key = func.coalesce(CONTACT.c.country, literal(""))
    method_key = func.coalesce(last_order_method(), literal(fallback)) if per_contact else literal("")
    groups = conn.execute(select(tz_key, country_key, method_key).where(draft.selected).distinct()).all()
    by_outcome: dict[tuple[datetime, MessageFacts] | str, list[_Group]] = defaultdict(list)
    for tz_name, country, method in groups:
        group = _Group(tz_name, country, method)
        by_outcome[_decide(campaign, occurrence, group, workspace, settings, zone, now)].append(group)
    cells = []
    for outcome, members in sorted(by_outcome.items(), key=lambda item: str(item[0])):
        keys = [(g.tz_name, g.country, g.method) for g in members]
        condition = tuple_(tz_key, country_key, method_key).in_(keys)
        if isinstance(outcome, str):
            cells.append(Cell(condition, None, excluded=outcome))
        else:
            instant, facts = outcome
            cells.append(Cell(condition, instant, facts))
    return cells


def _decide(
    campaign: Campaign,
    occurrence: Occurrence,
    group: _Group,
    workspace: Workspace,
    settings: Settings,
    zone: ZoneInfo,
    now: datetime | None,
) -> tuple[datetime, MessageFacts] | str:
    """One group's send instant and facts, or the reason it is left out."""
    cutoff: Cutoff | None = None
    if occurrence.per_contact_date:
        cutoff = workspace.schedules.shipping_cutoff(group.country or None, group.method or None)
        if cutoff is None:
            return "no_cutoff"
    resolved = resolve_zone(
        group.tz_name or None,
        group.country or None,
        cutoff_zone=cutoff.zone if cutoff is not None else None,
        default=settings.zone,
    )
    send_zone = resolved.zone if occurrence.local_time else zone
    if now is not None:
        instant = now  # `tidings trigger`: due at once, holiday or not
    elif cutoff is not None:
        at = occurrence.at or cutoff.order_by.time()
        instant = local_instant(cutoff_day(cutoff, occurrence.offset_days or 0), at, send_zone)
    elif occurrence.local is not None:
        instant = local_instant(occurrence.local.date(), occurrence.local.time(), send_zone)
    else:
        instant = occurrence.fire_at
    if now is None and campaign.limits.skip_public_holidays:
        instant = skip_holidays(instant, resolved.zone, group.country or None)
    if now is None and cutoff is not None and not _in_window(campaign, instant.astimezone(zone).date()):
        return "outside_window"
    facts = MessageFacts(
        occurrence_at=instant,
        trigger_date=cutoff.date if cutoff is not None else occurrence.trigger_date,
        cutoff=cutoff,
    ).with_zone(resolved)
    return instant, facts


# --- writing -------------------------------------------------------------------------------------------


def _stamp(moment: datetime | None) -> ColumnElement[datetime]:
    return literal(moment, UTCDateTime())


def _json(value: dict[str, Any]) -> ColumnElement[Any]:
    return literal(value, JSONType)


@dataclass(frozen=True)
class Part:
    """One way a cell's contacts are written: who (within the cell), with which variants, in which
    state and why, and how long after the cell's instant."""

    condition: ColumnElement[bool]
    choices: list[ab.Variant]
    labelled: bool
    state: str = "pending"
    reason: str | None = None
    delay: timedelta = timedelta(0)


def delivery_parts(campaign: Campaign, step: SendStep) -> list[Part]:
    """The holdout (skipped), the test slice and the rest awaiting its winner, or everyone at once."""
    choices = send_variants(step)
    control = choices[:1]  # the first listed variant: the holdout's label and the tie's default
    held = holdout_sql(campaign, CONTACT.c.id)
    parts = []
    if campaign.holdout is not None:
        parts.append(Part(held, control, False, "skipped", HOLDOUT))
    test = step_test(step)
    if test is None:
        parts.append(Part(not_(held), choices, len(choices) > 1))
        return parts
    in_slice = test_slice_sql(campaign, step, CONTACT.c.id)
    parts.append(Part(and_(not_(held), in_slice), choices, True))
    parts.append(
        Part(
            and_(not_(held), not_(in_slice)),
            control,
            False,
            reason=AWAITING_TEST,
            delay=test.decide_after.delta,
        )
    )
    return parts


def _delivery_select(draft: Draft, cell: Cell, step: SendStep, now: datetime, part: Part) -> Select[Any]:
    campaign_id = draft.campaign.key
    choices = part.choices
    template = ab.choose_sql(CONTACT.c.id, campaign_id, choices, "template")
    variant = (
        ab.choose_sql(CONTACT.c.id, campaign_id, choices, "label")
        if part.labelled
        else literal(None, String())
    )
    assert cell.instant is not None
    return select(
        delivery_key_sql(campaign_id, step.step_id, CONTACT.c.id, draft.occurrence.key).label(
            "idempotency_key"
        ),
        literal(campaign_id, String()).label("campaign_id"),
        literal(step.step_id, String()).label("step_id"),
        CONTACT.c.id.label("contact_id"),
        literal(str(step.send.channel), String()).label("channel"),
        literal(category(draft.campaign), String()).label("category"),
        template.label("template"),
        delivery_locale_sql(draft.campaign.forced_locales(step), CONTACT.c.locale).label("locale"),
        variant.label("variant"),
        literal(draft.occurrence.key, String()).label("occurrence"),
        _stamp(cell.instant + part.delay).label("scheduled_for"),
        literal(part.state, String()).label("state"),
        literal(part.reason, String()).label("reason"),
        literal(0, Integer()).label("attempts"),
        _stamp(now).label("created_at"),
        _json(cell.facts.to_json()).label("context"),
        message_token_sql().label("message_token"),
    ).where(cell.condition, draft.selected, part.condition)


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
    "reason",
    "attempts",
    "created_at",
    "context",
    "message_token",
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
    "ended_at",
    "end_reason",
)


def _enrolment_select(draft: Draft, cell: Cell, now: datetime, held: bool) -> Select[Any]:
    """Enrolments of the cell: active from the cell's instant, or (``held``) the holdout's, ended at
    once as ``exited`` with reason ``holdout``."""
    assert cell.instant is not None
    holdout = holdout_sql(draft.campaign, CONTACT.c.id)
    return select(
        literal(draft.campaign.key, String()),
        CONTACT.c.id,
        literal(draft.occurrence.key, String()),
        literal("exited" if held else "active", String()),
        literal(draft.campaign.first_path(), String()),
        _stamp(None if held else cell.instant),
        _json({}),
        _json(cell.facts.to_json()),
        _stamp(now),
        _stamp(now),
        _stamp(now if held else None),
        literal(HOLDOUT if held else None, String()),
    ).where(cell.condition, draft.selected, holdout if held else not_(holdout))


def count_cell(conn: Connection, draft: Draft, cell: Cell) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(CONTACT).where(cell.condition, draft.selected)
        ).scalar_one()
    )


def _rowcount(conn: Connection, statement: Executable) -> int:
    return max(int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount or 0), 0)


def write_plan(conn: Connection, draft: Draft, now: datetime) -> PlanStats:
    """Write the draft's rows (idempotently) and return what was created and left out."""
    stats = PlanStats(draft.campaign.key, draft.occurrence.key, draft.mode, skipped=draft.skipped)
    if draft.skipped:
        return stats
    if draft.mode == "posts":
        return _write_posts(conn, draft, now, stats)
    _adopt_legacy_keys(conn, draft)
    for cell in draft.cells:
        if cell.excluded is not None:
            stats.excluded[cell.excluded] = stats.excluded.get(cell.excluded, 0) + count_cell(
                conn, draft, cell
            )
            continue
        if draft.mode == "deliveries":
            step = draft.campaign.steps[0]
            assert isinstance(step, SendStep)
            for part in delivery_parts(draft.campaign, step):
                statement = (
                    insert_for(conn, DELIVERY)
                    .from_select(DELIVERY_COLUMNS, _delivery_select(draft, cell, step, now, part))
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                )
                stats.created += _rowcount(conn, statement)
            continue
        for held in (False, True) if draft.campaign.holdout is not None else (False,):
            statement = (
                insert_for(conn, ENROLMENT)
                .from_select(ENROLMENT_COLUMNS, _enrolment_select(draft, cell, now, held))
                .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id", "occurrence"])
            )
            stats.created += _rowcount(conn, statement)
    _record_test(conn, draft, now)
    return stats


def _test_delay(campaign: Campaign, contact_id: int) -> timedelta:
    """How much later than its cell's instant a one-send campaign's row is due: ``decide_after`` for
    the rest of an A/B test's audience (outside the test slice), nothing otherwise."""
    step = campaign.steps[0]
    if not isinstance(step, SendStep) or (test := step_test(step)) is None:
        return timedelta(0)
    return timedelta(0) if in_test_slice(campaign, step, contact_id) else test.decide_after.delta


def _record_test(conn: Connection, draft: Draft, now: datetime) -> None:
    """Record a deliveries-mode A/B test, due when the first awaiting row is: the occurrence's
    earliest send + ``decide_after`` (see :mod:`engine.runtime.ab_tests` for why the earliest)."""
    if draft.mode != "deliveries":
        return
    step = draft.campaign.steps[0]
    assert isinstance(step, SendStep)
    test = step_test(step)
    instants = [cell.instant for cell in draft.cells if cell.excluded is None and cell.instant is not None]
    if test is None or not instants:
        return
    record_test(
        conn, draft.campaign, step, draft.occurrence.key, min(instants) + test.decide_after.delta, now
    )


def _adopt_legacy_keys(conn: Connection, draft: Draft) -> None:
    """Rows planned before per-contact calendar keys named their season (``shipping_cutoff-7d``) are
    renamed to this season's key (``shipping_cutoff-7d@2026-12-24``) when their send time falls in
    this season, so upgrading in the middle of a season never sends a reminder twice.

    A season is the 60 days before the date the cutoffs count towards; one indexed UPDATE per
    table, a no-op once nothing legacy is left.
    """
    occurrence = draft.occurrence
    if occurrence.kind != "calendar" or not occurrence.per_contact_date or occurrence.season is None:
        return
    legacy = occurrence.key.split("@", 1)[0]
    end = datetime.combine(occurrence.season + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo("UTC"))
    start = end - timedelta(days=61)
    suffix = literal("@" + occurrence.season.isoformat(), String())
    conn.execute(
        update(DELIVERY)
        .where(
            DELIVERY.c.campaign_id == draft.campaign.key,
            DELIVERY.c.occurrence == legacy,
            DELIVERY.c.scheduled_for >= start,
            DELIVERY.c.scheduled_for < end,
        )
        .values(occurrence=occurrence.key, idempotency_key=DELIVERY.c.idempotency_key + suffix)
    )
    conn.execute(
        update(ENROLMENT)
        .where(
            ENROLMENT.c.campaign_id == draft.campaign.key,
            ENROLMENT.c.occurrence == legacy,
            ENROLMENT.c.created_at >= start,
            ENROLMENT.c.created_at < end,
        )
        .values(occurrence=occurrence.key)
    )


def _write_posts(conn: Connection, draft: Draft, now: datetime, stats: PlanStats) -> PlanStats:
    (cell,) = draft.cells
    assert cell.instant is not None
    for step in draft.campaign.post_steps():
        row = {
            "idempotency_key": post_key(draft.campaign.key, step.step_id, draft.occurrence.key),
            "campaign_id": draft.campaign.key,
            "step_id": step.step_id,
            "channel": str(step.post.channel),
            "template": step.post.template,
            "occurrence": draft.occurrence.key,
            "scheduled_for": cell.instant,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
            "context": cell.facts.to_json(),
        }
        statement = (
            insert_for(conn, POST).values(**row).on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        stats.created += _rowcount(conn, statement)
    return stats


def plan_occurrence(
    engine: Engine,
    workspace: Workspace,
    campaign: Campaign,
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
        return PlanStats(campaign.key, occurrence.key, mode, skipped=campaign.status.value)
    now = clock.now()
    with engine.begin() as conn:
        draft = draft_plan(conn, workspace, campaign, occurrence, settings=settings, now=now, due_now=due_now)
        stats = write_plan(conn, draft, now)
        if fence is not None:
            fence(conn)
        return stats


# --- one contact -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactPlan:
    """What planning ``occurrence`` decides for one contact: when and from which facts, or why not."""

    contact_id: int
    occurrence: Occurrence
    instant: datetime | None
    facts: MessageFacts
    excluded: str | None = None

    @property
    def reached(self) -> bool:
        return self.excluded is None


def plan_contact(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    occurrence: Occurrence,
    contact_id: int,
    *,
    settings: Settings,
    now: datetime,
    due_now: bool = False,
) -> ContactPlan:
    """The planner's decision for one contact, from the same cells it writes for the whole audience.

    ``excluded`` names why the contact would get nothing: ``not_in_audience``, ``not_eligible``
    (consent or a suppression), a cell's reason (``no_cutoff``, ``outside_window``), or
    ``holdout`` (kept unsent by the campaign's holdout, to measure its lift). A contact
    outside the audience still gets the facts their message would have (their own cutoff and zone),
    so a preview shows what they would read.
    """
    only = CONTACT.c.id == contact_id
    draft = draft_plan(
        conn, workspace, campaign, occurrence, settings=settings, now=now, due_now=due_now, only=only
    )
    base = MessageFacts(occurrence_at=occurrence.fire_at, trigger_date=occurrence.trigger_date)
    if draft.skipped:
        return ContactPlan(contact_id, occurrence, None, base, draft.skipped)
    for cell in draft.cells:
        if count_cell(conn, draft, cell):
            if cell.excluded is None and in_holdout(campaign, contact_id):
                return ContactPlan(contact_id, occurrence, None, cell.facts, HOLDOUT)
            instant = cell.instant
            if instant is not None and draft.mode == "deliveries":
                instant += _test_delay(campaign, contact_id)
            return ContactPlan(contact_id, occurrence, instant, cell.facts, cell.excluded)
    in_audience = conn.execute(select(func.count()).select_from(CONTACT).where(draft.audience)).scalar_one()
    reason = "not_eligible" if in_audience else "not_in_audience"
    # What the message would say were they reached: the same cells, over this contact alone.
    draft.audience, draft.eligible = only, true()
    draft.cells = _cells(
        conn, draft, workspace, settings, campaign_zone(campaign, settings.zone), now if due_now else None
    )
    for cell in draft.cells:
        if cell.excluded is None and count_cell(conn, draft, cell):
            return ContactPlan(contact_id, occurrence, None, cell.facts, reason)
    return ContactPlan(contact_id, occurrence, None, base, reason)


__all__ = [
    "Cell",
    "ContactPlan",
    "Draft",
    "PlanError",
    "PlanStats",
    "audience_condition",
    "campaign_filters",
    "category",
    "count_cell",
    "delivery_parts",
    "draft_plan",
    "eligibility",
    "first_channel",
    "plan_contact",
    "plan_mode",
    "plan_occurrence",
    "send_variants",
    "write_plan",
]
