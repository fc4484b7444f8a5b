"""The flow stepper: walks enrolments through their campaign's steps as time and events arrive.

An enrolment is one contact's walk through one campaign for one occurrence. Its
``step_path`` names the next step to run (``"2"``, ``"2.then.0"``, see
``Campaign.step_at``) and ``wake_at`` when to run it. :func:`advance_due` runs every
enrolment whose ``wake_at`` has come, step after step, until it has to wait or ends:

``send``
    Writes a ``delivery`` row (idempotency key from :mod:`engine.runtime.keys`, due now)
    with the enrolment's facts (:class:`~engine.runtime.facts.MessageFacts`: what the planner
    decided — cutoff, trigger date, zone — plus its event and coupon); the dispatcher's policy
    gate decides later whether it goes out. A/B variants are assigned with the same hash
    as the planner (:mod:`engine.runtime.variants`) and recorded in ``delivery.variant``
    and ``enrolment.variants``; a step with a ``test`` gives the variants to its test slice
    and the winner to the rest (:func:`engine.runtime.ab_tests.flow_assignment`).
    ``to: recipient`` writes the row for the gift card's
    recipient instead (:mod:`engine.runtime.recipient`); a purchase whose card has no
    recipient ends the enrolment ``exited`` with reason ``no_recipient``.
``wait``
    ``2d``: wake in two days. ``{duration, until_time}``: then on to the next such time
    of day. ``{until_date: EXPR, until_time}``: until that date (the expression's value over
    the flow's context: a date, a date-time or ISO text) at that time; a missing or past date
    does not wait, a value that is not a date ends the enrolment (``expression_error``).
    Times of day are in the zone of the contact the next send goes to (the recipient's for
    ``to: recipient``). ``{for_event, timeout}``: state ``waiting`` until the
    contact's next event of that type (:func:`on_events`, or the next :func:`advance_due`
    that sees it in the store) or the timeout, whichever comes first.
``if``
    Evaluates the expression (``engine.workspace.expressions.evaluate``) over the very
    context a message of this enrolment would see (:mod:`engine.runtime.message_context`),
    and enters ``then`` or ``else``.
``coupon``
    Issues the contact's unique code (``engine.runtime.coupons``) into the enrolment
    context, so later sends see it as ``coupon``.
``exit``
    Ends the enrolment (``exited``). The end of the steps ends it ``completed``.

A campaign ``goal`` event ends the enrolment as ``converted`` as soon as it is seen.
Every enrolment advances in its own transaction, guarded by its ``updated_at`` (two
steppers racing on one enrolment: the second one's transaction is rolled back), and
every write is idempotent, so a crash mid-step repeats the step without duplicating it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import UndefinedError
from sqlalchemy import Table, func, select, true, update
from sqlalchemy.engine import Connection, Engine

from engine.clock import Clock
from engine.runtime.ab_tests import flow_assignment
from engine.runtime.controls import controls
from engine.runtime.coupons import issue_coupon
from engine.runtime.delivery_locale import delivery_locale
from engine.runtime.exits import expression_reason
from engine.runtime.facts import CouponFact, MessageFacts
from engine.runtime.keys import delivery_key, new_message_token
from engine.runtime.local_time import local_instant
from engine.runtime.message_context import StoredData, StoreRow, message_context
from engine.runtime.recipient import Addressee, addressee, addressee_zone
from engine.settings import Settings
from engine.store.dialect import insert_for
from engine.store.models import Delivery, DeliveryState, Enrolment, EnrolmentState, ShopEvent
from engine.workspace.expressions import evaluate, value_of
from engine.workspace.loader import Workspace
from engine.workspace.models import (
    Campaign,
    SendStep,
    StepPathError,
    WaitForEvent,
    WaitStep,
    WaitUntil,
    WaitUntilDate,
)

log = logging.getLogger(__name__)

ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
EVENT: Table = ShopEvent.__table__  # type: ignore[attr-defined]

LIVE = (EnrolmentState.active.value, EnrolmentState.waiting.value)
#: ``step_path`` of an enrolment whose last step was a wait: it completes when it wakes.
END = "end"
#: Steps run in one wake before the stepper stops (a guard against a flow that never waits).
MAX_STEPS_PER_WAKE = 200


@dataclass(slots=True)
class FlowStats:
    advanced: int = 0
    deliveries: int = 0
    coupons: int = 0
    waiting: int = 0
    completed: int = 0
    exited: int = 0
    converted: int = 0
    woken: int = 0
    errors: int = 0

    def add(self, other: FlowStats) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


class _Conflict(Exception):
    """Another stepper advanced this enrolment first: roll back ours."""


# --- public API -------------------------------------------------------------------------------


def advance_due(
    engine: Engine, workspace: Workspace, clock: Clock, settings: Settings, *, limit: int = 500
) -> FlowStats:
    """Advance every live enrolment whose ``wake_at`` has come, in batches of ``limit``, until none is due."""
    total = FlowStats()
    campaigns = workspace.campaigns
    while True:
        now = clock.now()
        with engine.begin() as conn:
            control = controls(conn)
            runnable = sorted(
                cid
                for cid, campaign in campaigns.items()
                if campaign.status.value == "active" and control.get(cid, "active") == "active"
            )
            total.converted += _convert_on_goals(conn, campaigns, runnable, now)
            total.woken += _wake_on_events(conn, runnable, now)
            if not runnable:
                return total
            due = list(
                conn.execute(
                    select(ENROLMENT)
                    .where(
                        ENROLMENT.c.state.in_(LIVE),
                        ENROLMENT.c.wake_at <= now,
                        ENROLMENT.c.campaign_id.in_(runnable),
                    )
                    .order_by(ENROLMENT.c.wake_at, ENROLMENT.c.id)
                    .limit(limit)
                )
            )
        if not due:
            return total
        for row in due:
            stats = FlowStats()
            try:
                with engine.begin() as conn:
                    _advance(conn, campaigns[row.campaign_id], row, now, settings, stats)
            except _Conflict:
                continue
            total.add(stats)
        if len(due) < limit:
            return total


def on_events(
    engine: Engine, workspace: Workspace, event_ids: list[int], clock: Clock, settings: Settings
) -> FlowStats:
    """New shop events: end enrolments whose goal they are, wake those waiting for them, then advance."""
    stats = FlowStats()
    if not event_ids:
        return stats
    # Goals and waits are found from the store (these events are in it by now); advancing
    # right away lets a woken enrolment's next send go out without waiting for the next tick.
    return advance_due(engine, workspace, clock, settings)


# --- goals and event waits --------------------------------------------------------------------


def _convert_on_goals(
    conn: Connection, campaigns: dict[str, Campaign], runnable: list[str], now: datetime
) -> int:
    """End live enrolments as ``converted`` when their contact had the goal event since enrolling."""
    converted = 0
    for cid in runnable:
        goal = campaigns[cid].goal
        if goal is None:
            continue
        reached = (
            select(EVENT.c.id)
            .where(
                EVENT.c.contact_id == ENROLMENT.c.contact_id,
                EVENT.c.type == str(goal.event),
                EVENT.c.occurred_at >= ENROLMENT.c.created_at,
                EVENT.c.occurred_at <= now,
            )
            .exists()
        )
        result = conn.execute(
            update(ENROLMENT)
            .where(ENROLMENT.c.campaign_id == cid, ENROLMENT.c.state.in_(LIVE), reached)
            .values(
                state=EnrolmentState.converted.value,
                end_reason=f"goal:{goal.event}",
                ended_at=now,
                wake_at=None,
                updated_at=now,
            )
        )
        converted += result.rowcount or 0
    return converted


def _wake_on_events(conn: Connection, runnable: list[str], now: datetime) -> int:
    """Wake ``waiting`` enrolments whose awaited event has arrived since the wait began (``updated_at``)."""
    if not runnable:
        return 0
    arrived = (
        select(EVENT.c.id)
        .where(
            EVENT.c.contact_id == ENROLMENT.c.contact_id,
            EVENT.c.type == ENROLMENT.c.waiting_for,
            EVENT.c.occurred_at >= ENROLMENT.c.updated_at,
            EVENT.c.occurred_at <= now,
        )
        .exists()
    )
    result = conn.execute(
        update(ENROLMENT)
        .where(
            ENROLMENT.c.state == EnrolmentState.waiting.value,
            ENROLMENT.c.campaign_id.in_(runnable),
            ENROLMENT.c.wake_at > now,
            arrived,
        )
        .values(wake_at=now, end_reason=None)
    )
    return result.rowcount or 0


# --- one enrolment ----------------------------------------------------------------------------


def _advance(
    conn: Connection, campaign: Campaign, row: StoreRow, now: datetime, settings: Settings, stats: FlowStats
) -> None:
    data = StoredData.load(conn, [row.contact_id], [row.event_id] if row.event_id is not None else [])
    facts = MessageFacts.from_json(row.context).with_enrolment(row.id, row.event_id)
    values: dict[str, Any] = {
        "step_path": row.step_path,
        "variants": dict(row.variants or {}),
        "context": dict(row.context or {}),
        "state": EnrolmentState.active.value,
        "waiting_for": None,
        "wait_deadline": None,
    }
    contact = data.contacts.get(row.contact_id)
    if contact is None:
        _end(values, EnrolmentState.exited, "no_contact", now)
        _save(conn, row, values, now)
        stats.exited += 1
        return
    stats.advanced += 1
    path: str | None = row.step_path
    for _ in range(MAX_STEPS_PER_WAKE):
        if path is None or path == END:
            _end(values, EnrolmentState.completed, "completed", now)
            stats.completed += 1
            break
        try:
            step = campaign.step_at(path)
        except StepPathError:
            log.warning("campaign %s has no step %s any more; enrolment %s exits", campaign.key, path, row.id)
            _end(values, EnrolmentState.exited, "step_removed", now)
            stats.exited += 1
            break
        kind = step.kind
        if isinstance(step, SendStep):
            addressed = addressee(conn, step.send.to, contact, data, facts, settings)
            if addressed is None:
                _end(values, EnrolmentState.exited, "no_recipient", now)
                stats.exited += 1
                break
            stats.deliveries += _send(conn, campaign, step, row, addressed, values, now)
            path = campaign.next_path(path)
        elif kind == "coupon":
            spec = step.coupon  # type: ignore[union-attr]
            issued = issue_coupon(
                conn,
                campaign_id=campaign.key,
                coupon_id=str(spec.id),
                contact_id=row.contact_id,
                occurrence=row.occurrence,
                percent=spec.percent,
                prefix=spec.prefix or "",
                now=now,
                expires_in=spec.expires_in.delta,
            )
            facts = facts.with_coupon(CouponFact(issued.code, issued.percent, issued.expires_at))
            values["context"] = {**values["context"], "coupon": facts.to_json()["coupon"]}
            stats.coupons += 1
            path = campaign.next_path(path)
        elif kind == "if":
            condition = step.condition  # type: ignore[union-attr]
            try:
                context = message_context(settings, campaign, facts, data, contact_id=contact.id, now=now)
                taken = bool(evaluate(condition, context))
            except Exception as exc:  # noqa: BLE001 — a data problem ends this contact's flow, not the stepper
                reason = expression_reason(campaign, path, condition, exc)
                log.warning("campaign %s enrolment %s exits: %s", campaign.key, row.id, reason)
                _end(values, EnrolmentState.exited, reason, now)
                stats.exited += 1
                break
            path = campaign.branch_path(path, taken)
        elif isinstance(step, WaitStep):
            spec = step.spec
            zone = _wait_zone(conn, campaign, path, contact, data, facts, settings)
            if isinstance(spec, WaitUntilDate):
                try:
                    wake = _date_wake(spec, campaign, facts, data, contact, zone, settings, now)
                except ExpressionValueError as exc:
                    reason = expression_reason(campaign, path, spec.until_date, exc)
                    log.warning("campaign %s enrolment %s exits: %s", campaign.key, row.id, reason)
                    _end(values, EnrolmentState.exited, reason, now)
                    stats.exited += 1
                    break
                if wake is None:
                    path = campaign.next_path(path)  # no date, or it has passed: on at once
                    continue
                values.update(step_path=campaign.next_path(path) or END, wake_at=wake)
            else:
                _wait(spec, campaign, path, zone, values, now)
            stats.waiting += 1
            break
        elif kind == "exit":
            _end(values, EnrolmentState.exited, "exit", now)
            stats.exited += 1
            break
        else:  # post steps are broadcasts; validation keeps them out of flows
            _end(values, EnrolmentState.exited, f"unsupported_step:{kind}", now)
            stats.exited += 1
            break
    else:
        values["wake_at"] = now + timedelta(minutes=1)
        values["step_path"] = path
        log.warning(
            "campaign %s ran %d steps without waiting; pausing it a minute", campaign.key, MAX_STEPS_PER_WAKE
        )
    if values["state"] == EnrolmentState.active.value and "wake_at" not in values:
        values["wake_at"] = None
    _save(conn, row, values, now)


def _end(values: dict[str, Any], state: EnrolmentState, reason: str, now: datetime) -> None:
    values.update(state=state.value, end_reason=reason, ended_at=now, wake_at=None)


def _save(conn: Connection, row: StoreRow, values: dict[str, Any], now: datetime) -> None:
    values["updated_at"] = now
    guard = ENROLMENT.c.updated_at == row.updated_at if row.updated_at is not None else true()
    result = conn.execute(update(ENROLMENT).where(ENROLMENT.c.id == row.id, guard).values(**values))
    if not result.rowcount:
        raise _Conflict()


class ExpressionValueError(ValueError):
    """An ``until_date`` whose value is not a date."""


def _wait_zone(
    conn: Connection,
    campaign: Campaign,
    path: str,
    contact: StoreRow,
    data: StoredData,
    facts: MessageFacts,
    settings: Settings,
) -> ZoneInfo:
    """The zone a wait's times of day are in: that of the contact the next send goes to."""
    upcoming = campaign.next_send(path)
    to = upcoming.send.to if upcoming is not None else "contact"
    addressed = addressee(conn, to, contact, data, facts, settings) or Addressee(contact, data, facts)
    return ZoneInfo(addressee_zone(addressed, settings))


def _date_wake(
    spec: WaitUntilDate,
    campaign: Campaign,
    facts: MessageFacts,
    data: StoredData,
    contact: StoreRow,
    zone: ZoneInfo,
    settings: Settings,
    now: datetime,
) -> datetime | None:
    """When an ``until_date`` wait ends: the date at ``until_time`` in ``zone``; None when there is
    no date or that moment has passed."""
    context = message_context(settings, campaign, facts, data, contact_id=contact.id, now=now)
    try:
        value = value_of(spec.until_date, context)
    except UndefinedError:
        return None  # e.g. event.data.send_on of an event without data
    except Exception as exc:  # noqa: BLE001 — the sandbox's refusals and type errors alike
        raise ExpressionValueError(f"until_date {spec.until_date!r}: {exc}") from None
    day = _as_date(value, zone)
    if day is None:
        if value is None or value == "":
            return None
        raise ExpressionValueError(f"until_date {spec.until_date!r} is {value!r}, not a date")
    wake = local_instant(day, spec.until_time, zone)
    return wake if wake > now else None


def _as_date(value: object, zone: ZoneInfo) -> date | None:
    """A date from a date, an aware date-time (its day in ``zone``) or ISO text; None otherwise."""
    if isinstance(value, datetime):
        return value.astimezone(zone).date() if value.tzinfo is not None else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _as_date(moment, zone)
    return None


def _wait(
    spec: WaitUntil | WaitForEvent,
    campaign: Campaign,
    path: str,
    zone: ZoneInfo,
    values: dict[str, Any],
    now: datetime,
) -> None:
    values["step_path"] = campaign.next_path(path) or END
    if isinstance(spec, WaitForEvent):
        deadline = now + spec.timeout.delta
        values.update(
            state=EnrolmentState.waiting.value,
            waiting_for=str(spec.for_event),
            wait_deadline=deadline,
            wake_at=deadline,
        )
        return
    wake = now + spec.duration.delta
    if spec.until_time is not None:
        wake = next_local_time(wake, spec.until_time, zone)
    values["wake_at"] = wake


def next_local_time(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first instant at or after ``after`` whose wall-clock time in ``zone`` is ``at``."""
    local_day = after.astimezone(zone).date()
    for offset in range(3):
        candidate = local_instant(local_day + timedelta(days=offset), at, zone)
        if candidate >= after:
            return candidate
    return local_instant(local_day + timedelta(days=3), at, zone)  # pragma: no cover — DST cannot skip 2 days


def _send(
    conn: Connection,
    campaign: Campaign,
    step: SendStep,
    row: StoreRow,
    addressed: Addressee,
    values: dict[str, Any],
    now: datetime,
) -> int:
    contact_id = addressed.contact_id
    chosen = flow_assignment(conn, campaign, step, contact_id, now)
    label = chosen.label
    if label:
        values["variants"][step.step_id] = label
    statement = (
        insert_for(conn, DELIVERY)
        .values(
            idempotency_key=delivery_key(campaign.key, step.step_id, contact_id, row.occurrence),
            campaign_id=campaign.key,
            step_id=step.step_id,
            contact_id=contact_id,
            enrolment_id=row.id,
            channel=str(step.send.channel),
            category=campaign.category.value,
            template=chosen.template,
            locale=delivery_locale(addressed.contact.locale, campaign.forced_locales(step)),
            variant=label,
            occurrence=row.occurrence,
            scheduled_for=chosen.scheduled_for,
            state=DeliveryState.pending.value,
            reason=chosen.reason,
            attempts=0,
            created_at=now,
            context=addressed.facts.to_json(),
            message_token=new_message_token(),
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    return max(int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount or 0), 0)


def enrolment_counts(conn: Connection, campaign_id: str) -> dict[str, int]:
    """Enrolments of a campaign by state (for ``trigger --wait`` and stats)."""
    rows = conn.execute(
        select(ENROLMENT.c.state, func.count())
        .where(ENROLMENT.c.campaign_id == campaign_id)
        .group_by(ENROLMENT.c.state)
    )
    return {state: int(count) for state, count in rows}


__all__ = ["FlowStats", "advance_due", "enrolment_counts", "next_local_time", "on_events"]
