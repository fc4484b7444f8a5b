"""The dry run behind ``tidings plan``: what planning an occurrence would do, nothing written.

The counts come from the planner's own SELECTs (:func:`engine.runtime.planner.draft_plan`): the
same audience, eligibility and cells, so what ``plan`` shows is what ``trigger`` and the daemon
will write. The first rows carry the very facts the planner would store on them, so rendering
them (``plan`` does) shows the message exactly as it will be sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, Table, and_, bindparam, case, false, func, literal, not_, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from engine.audience import (
    CONTACT,
    AudienceContext,
    compile_filters,
    legal_basis,
    permission,
    strip_consent,
    suppressed,
)
from engine.runtime import variants as ab
from engine.runtime.ab_tests import describe_test
from engine.runtime.collisions import cap_forecast
from engine.runtime.delivery_locale import delivery_locale_sql
from engine.runtime.exits import ORDINARY, example_reasons, reason_kind
from engine.runtime.facts import MessageFacts
from engine.runtime.occurrences import Occurrence, campaign_zone
from engine.runtime.planner import (
    Draft,
    Mode,
    campaign_filters,
    category,
    count_cell,
    draft_plan,
    first_channel,
    send_variants,
)
from engine.runtime.policy import FrequencyCap, capped_sql
from engine.runtime.splits import holdout_sql, step_test, test_slice_sql
from engine.settings import Settings
from engine.store.models import Delivery, Enrolment, EnrolmentState, Post
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign, SendStep

#: The variant shown for the rest of an A/B test's audience: it is the winner, decided later.
AWAITING_WINNER = "(the winner, after the test)"


@dataclass
class TestPlan:
    """A send step's A/B test as ``plan`` shows it: what it does and how the reach splits."""

    step_id: str
    description: str  # "A/B test: 20% first, the winner by clicks after 4h"
    share: float
    decide_after_seconds: float
    metric: str
    test: int | None = None  # contacts in the test slice (one-send campaigns)
    rest: int | None = None  # contacts who get the winner

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "description": self.description,
            "share": self.share,
            "decide_after_seconds": self.decide_after_seconds,
            "by": self.metric,
            "test": self.test,
            "rest": self.rest,
        }


@dataclass
class PlannedRow:
    """One contact the plan would reach, as ``tidings plan`` shows it, with the facts it would store."""

    contact_id: int
    email: str
    timezone: str
    scheduled_for: datetime
    local_time: str
    template: str | None
    locale: str | None
    variant: str | None
    step_id: str | None
    facts: MessageFacts


@dataclass
class DryRun:
    """What planning an occurrence would do, counted with the planner's own SELECTs; nothing written."""

    campaign: str
    occurrence: Occurrence
    mode: Mode
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
    first_send: datetime | None = None  # the earliest instant a reached contact is due
    #: Rows this occurrence has already (by state): it fired — on schedule or ahead of it with
    #: ``trigger --now`` — and planning it again adds nothing for those contacts.
    already: dict[str, int] = field(default_factory=dict)
    #: Flows of this occurrence that ended early for a reason worth a look (expression_error, …).
    exits: dict[str, int] = field(default_factory=dict)
    exit_examples: list[str] = field(default_factory=list)  # the full reasons, with file and line
    #: Contacts the campaign's holdout keeps unsent (None without a holdout); not in ``reach``.
    holdout: int | None = None
    holdout_share: float | None = None
    #: The A/B tests of the campaign's send steps (counts for a one-send campaign).
    tests: list[TestPlan] = field(default_factory=list)
    #: Of those the frequency cap holds back, how many lose their slot to each campaign (this one's
    #: other occurrences included): what was sent, what waits, what is planned next.
    capped_by: dict[str, int] = field(default_factory=dict)
    #: When it reaches nobody: each audience condition as written, how many it keeps alone and
    #: together with the ones above it (:func:`why_zero`).
    why_zero: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "occurrence": self.occurrence.key,
            "fires_at": self.occurrence.fire_at.isoformat(),
            "first_send": self.first_send.isoformat() if self.first_send else None,
            "mode": self.mode,
            "step": self.step_id,
            "matched": self.matched,
            "reach": self.reach,
            "excluded": dict(self.excluded),
            "capped_by": dict(self.capped_by),
            "breakdown": list(self.breakdown),
            "skipped": self.skipped,
            "event_type": self.event_type,
            "already": dict(self.already),
            "exits": dict(self.exits),
            "exit_examples": list(self.exit_examples),
            "holdout": self.holdout,
            "holdout_share": self.holdout_share,
            "ab_tests": [test.as_dict() for test in self.tests],
            "why_zero": list(self.why_zero),
        }


DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]


def _count(conn: Connection, *conditions: ColumnElement[bool]) -> int:
    statement = select(func.count()).select_from(CONTACT).where(*conditions)
    return int(conn.execute(statement).scalar_one())


def _first_send_step(campaign: Campaign) -> SendStep | None:
    first = campaign.steps[0] if campaign.steps else None
    return first if isinstance(first, SendStep) else None


def _tests(campaign: Campaign) -> list[TestPlan]:
    tests = []
    for step in campaign.iter_steps():
        if isinstance(step, SendStep) and (test := step_test(step)) is not None:
            description = describe_test(step)
            assert description is not None
            tests.append(
                TestPlan(
                    step.step_id,
                    description,
                    test.share.fraction,
                    test.decide_after.delta.total_seconds(),
                    test.by,
                )
            )
    return tests


def dry_run(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    occurrence: Occurrence,
    *,
    settings: Settings,
    now: datetime,
    sample: int = 10,
) -> DryRun:
    """Count who the occurrence would reach and why others are left out, and list the first rows."""
    draft = draft_plan(conn, workspace, campaign, occurrence, settings=settings, now=now)
    result = DryRun(campaign.key, occurrence, draft.mode, skipped=draft.skipped)
    for table in (DELIVERY, POST):
        states = select(table.c.state, func.count()).where(
            table.c.campaign_id == campaign.key, table.c.occurrence == occurrence.key
        )
        for state, count in conn.execute(states.group_by(table.c.state)):
            result.already[state] = result.already.get(state, 0) + int(count)
    exited = select(ENROLMENT.c.end_reason, func.count()).where(
        ENROLMENT.c.campaign_id == campaign.key,
        ENROLMENT.c.occurrence == occurrence.key,
        ENROLMENT.c.state == EnrolmentState.exited.value,
    )
    for reason, count in conn.execute(exited.group_by(ENROLMENT.c.end_reason)):
        kind = reason_kind(reason)
        if kind not in ORDINARY:
            result.exits[kind] = result.exits.get(kind, 0) + int(count)
    if result.exits:
        result.exit_examples = example_reasons(conn, campaign.key)
    if campaign.trigger.event is not None:
        result.event_type = str(campaign.trigger.event.type)
    if draft.mode == "posts":
        result.first_send = draft.cells[0].instant
        return result
    channel = first_channel(campaign)
    ctx = AudienceContext(reference=draft.reference, zone=campaign_zone(campaign, settings.zone))
    base = compile_filters(strip_consent(campaign_filters(workspace, campaign)), ctx)
    result.matched = _count(conn, base)
    if category(campaign) == "marketing":
        granted = permission(channel, legal_basis(campaign_filters(workspace, campaign), channel))
        result.excluded["no_consent"] = _count(conn, base, not_(granted))
        result.excluded["suppressed"] = _count(conn, base, granted, suppressed(channel, "marketing"))
    else:
        result.excluded["suppressed"] = _count(conn, base, suppressed(channel, "transactional"))
    included = [cell for cell in draft.cells if cell.excluded is None]
    for cell in draft.cells:
        if cell.excluded is not None:
            result.excluded[cell.excluded] = result.excluded.get(cell.excluded, 0) + count_cell(
                conn, draft, cell
            )
    reachable = or_(false(), *(cell.condition for cell in included))
    if campaign.holdout is not None:
        held = holdout_sql(campaign, CONTACT.c.id)
        result.holdout = _count(conn, draft.selected, reachable, held)
        result.holdout_share = campaign.holdout.fraction
        result.excluded["holdout"] = result.holdout
        reachable = and_(reachable, not_(held))
    capped = _capped(conn, workspace, draft, reachable, result, settings=settings, now=now)
    if capped is not None:
        reachable = and_(reachable, not_(capped))
    result.reach = _count(conn, draft.selected, reachable)
    if result.reach == 0:
        result.why_zero = why_zero(conn, workspace, campaign, ctx, draft.eligible, (reachable, capped))
    step = _first_send_step(campaign)
    variant: ColumnElement[Any] = literal(None, String())
    template: ColumnElement[Any] = literal(None, String())
    in_slice: ColumnElement[Any] = literal(1, Integer())
    delay = timedelta(0)
    result.tests = _tests(campaign)
    if step is not None:
        result.step_id = step.step_id
        choices = send_variants(step)
        template = ab.choose_sql(CONTACT.c.id, campaign.key, choices, "template")
        if len(choices) > 1:
            variant = ab.choose_sql(CONTACT.c.id, campaign.key, choices, "label")
        test = step_test(step)
        if test is not None and draft.mode == "deliveries":
            in_test = test_slice_sql(campaign, step, CONTACT.c.id)
            counted = next(t for t in result.tests if t.step_id == step.step_id)
            counted.test = _count(conn, draft.selected, reachable, in_test)
            counted.rest = result.reach - counted.test
            variant = case((in_test, variant), else_=literal(AWAITING_WINNER))
            template = case((in_test, template), else_=literal(choices[0].template))
            in_slice = case((in_test, 1), else_=0)
            delay = test.decide_after.delta
    # the language each message is sent in, as the planner writes it on the row
    sent_locale = (
        delivery_locale_sql(campaign.forced_locales(step), CONTACT.c.locale)
        if step is not None
        else CONTACT.c.locale
    )
    grouped = (
        select(
            sent_locale.label("locale"), CONTACT.c.country, variant.label("variant"), func.count().label("n")
        )
        .where(draft.selected, reachable)
        .group_by(sent_locale, CONTACT.c.country, variant)
        .order_by(func.count().desc())
    )
    result.breakdown = [
        {"locale": loc, "country": country, "variant": var, "count": int(n)}
        for loc, country, var, n in conn.execute(grouped)
    ]
    uncapped = [not_(capped)] if capped is not None else []
    for cell in sorted(included, key=lambda c: c.instant or now):
        assert cell.instant is not None
        if result.first_send is None and _count(conn, draft.selected, cell.condition, *uncapped):
            result.first_send = cell.instant
        if len(result.first_rows) >= sample:
            continue
        rows = conn.execute(
            select(CONTACT.c.id, CONTACT.c.email, sent_locale, template, variant, in_slice)
            .where(draft.selected, cell.condition, reachable, *uncapped)
            .order_by(CONTACT.c.id)
            .limit(sample - len(result.first_rows))
        )
        zone = cell.facts.zone_info
        assert zone is not None
        for contact_id, email, locale, chosen, label, first in rows:
            due = cell.instant if first else cell.instant + delay
            result.first_rows.append(
                PlannedRow(
                    contact_id,
                    email,
                    zone.key,
                    due,
                    due.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
                    chosen,
                    locale,
                    label,
                    result.step_id,
                    cell.facts,
                )
            )
    return result


def _capped(
    conn: Connection,
    workspace: Workspace,
    draft: Draft,
    reachable: ColumnElement[bool],
    result: DryRun,
    *,
    settings: Settings,
    now: datetime,
) -> ColumnElement[bool] | None:
    """Who the frequency cap will hold back, as a condition (None without a cap), counted in
    ``result.excluded`` and, for a one-send campaign, forecast at each contact's own send instant
    with whose messages take the slot (:mod:`engine.runtime.collisions`). A flow is counted as the
    gate would see it at the occurrence's fire time, against what was sent (its sends come later,
    after waits and events no forecast knows)."""
    limit = draft.campaign.limits.frequency_cap
    if limit is None or category(draft.campaign) != "marketing":
        return None
    if draft.mode != "deliveries":
        capped = capped_sql(FrequencyCap(limit.max, limit.per.delta), draft.reference)
        result.excluded["frequency_cap"] = _count(conn, draft.selected, reachable, capped)
        return capped
    forecast = cap_forecast(conn, workspace, draft, reachable, settings=settings, now=now)
    result.excluded["frequency_cap"] = forecast.capped
    result.capped_by = dict(forecast.by.most_common())
    if not forecast.held:
        return false()
    # inline literals: a store of any size, and no bound-parameter limit (SQLite's 32,766)
    return CONTACT.c.id.in_(
        bindparam("held_by_cap", sorted(forecast.held), type_=Integer(), expanding=True, literal_execute=True)
    )


def why_zero(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    ctx: AudienceContext,
    eligible: ColumnElement[bool],
    planned: tuple[ColumnElement[bool], ColumnElement[bool] | None],
) -> list[dict[str, Any]]:
    """Why a campaign reaches nobody: every audience condition (segment's, then the campaign's, as
    written), then "may receive it" (consent, suppressions) and this occurrence's own limits (cutoff,
    window, frequency cap), each with how many contacts it keeps alone and together with those above.

    One COUNT per row; asked only when the reach is zero, so the common case pays nothing.
    """
    reachable, capped = planned
    found: list[dict[str, Any]] = []
    together: list[ColumnElement[bool]] = []

    def row(text: str, condition: ColumnElement[bool], *, alone: bool = True) -> int:
        together.append(condition)
        kept = _count(conn, *together)
        count = _count(conn, condition) if alone else None
        found.append({"condition": text, "alone": count, "together": kept})
        return kept

    for node in campaign_filters(workspace, campaign):
        written = node.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        row(_as_written(written), compile_filters([node], ctx))
    if found and found[-1]["together"] == 0:
        return found  # the audience itself is empty: what follows would only repeat it
    kept = row("may receive it (consent, not suppressed)", eligible)
    if kept:
        # Decided per group of the audience (their cutoff and zone): no "alone" count for these.
        kept = row("has a send on this occurrence (cutoff, window)", reachable, alone=False)
    if kept and capped is not None:
        row("under the frequency cap", not_(capped), alone=False)
    return found


def _as_written(value: Any) -> str:
    """A filter as YAML flow text: ``order: {placed_within: [2026-11-01, 2026-12-31]}``."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, item),) = value.items()
            return f"{key}: {_flow(item)}"
        return _flow(value)
    return _flow(value)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["AWAITING_WINNER", "DryRun", "PlannedRow", "TestPlan", "dry_run", "why_zero"]
