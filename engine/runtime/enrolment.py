"""Shop events → enrolments in event-triggered campaigns.

Each stored event whose type an active campaign is triggered by enrols its contact, when the
trigger's ``where`` holds over the message context (:mod:`engine.runtime.message_context`: the
event, its order or gift card, the contact — exactly what the flow's messages will see) and the
contact is in the campaign's audience and eligible (consent, suppressions). ``once_per_contact``
campaigns use the occurrence ``once``, so the unique (campaign, contact, occurrence) key keeps a
second event from enrolling the contact again.

A contact in the campaign's ``holdout`` share (:mod:`engine.runtime.splits`) is enrolled all the
same and ended at once (``exited``, reason ``holdout``): never sent, but counted, so the holdout's
lift is measured from the very events that enrolled the others.

A ``where`` that fails on one event (``None > 0``) does not start the flow: it is recorded as an
enrolment that ended at once, ``exited`` with the reason ``expression_error: … in "<where>"
(campaigns/x.yaml:N)`` (:mod:`engine.runtime.exits`), so the failure is counted and shown, never
only logged, and never stops the other events of the batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Integer, String, Table, and_, literal, select, true
from sqlalchemy.engine import Connection, Engine

from engine.audience import CONTACT, AudienceContext
from engine.clock import Clock
from engine.runtime.exits import expression_reason
from engine.runtime.facts import MessageFacts
from engine.runtime.message_context import StoredData, StoreRow, message_context
from engine.runtime.occurrences import campaign_zone, event_occurrence, is_active
from engine.runtime.planner import audience_condition, campaign_filters, eligibility
from engine.runtime.splits import HOLDOUT, in_holdout
from engine.runtime.zones import resolve_zone
from engine.settings import Settings
from engine.store.dialect import insert_for
from engine.store.models import Enrolment, EnrolmentState, ShopEvent
from engine.store.types import JSONType, UTCDateTime
from engine.workspace.expressions import evaluate
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign, SendStep

LOG = logging.getLogger(__name__)
ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
EVENT: Table = ShopEvent.__table__  # type: ignore[attr-defined]
COLUMNS = (
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
    "ended_at",
    "end_reason",
)


@dataclass
class EnrolStats:
    """New enrolments, and events a trigger's ``where`` could not be evaluated on (by campaign)."""

    created: int = 0
    expression_errors: Counter[str] = field(default_factory=Counter)


def event_facts(event: StoreRow, contact: StoreRow, settings: Settings) -> MessageFacts:
    """The facts of a message about ``event``: the event, its moment, the contact's zone."""
    facts = MessageFacts(occurrence_at=event.occurred_at, event_id=int(event.id))
    return facts.with_zone(
        resolve_zone(contact.timezone, contact.country, cutoff_zone=None, default=settings.zone)
    )


def _matches(
    campaign: Campaign, where: str, event: StoreRow, data: StoredData, settings: Settings, now: datetime
) -> bool:
    contact = data.contacts[event.contact_id]
    facts = event_facts(event, contact, settings)
    context = message_context(settings, campaign, facts, data, contact_id=contact.id, now=now)
    return bool(evaluate(where, context))


def enrol_for_events(
    engine: Engine, workspace: Workspace, event_ids: Iterable[int], clock: Clock, settings: Settings
) -> EnrolStats:
    """Enrol each event's contact in every active campaign whose event trigger matches."""
    stats = EnrolStats()
    ids = sorted(set(event_ids))
    campaigns = [c for c in workspace.campaigns.values() if c.trigger.event is not None and is_active(c)]
    if not ids or not campaigns:
        return stats
    now = clock.now()
    with engine.begin() as conn:
        events = conn.execute(select(EVENT).where(EVENT.c.id.in_(ids), EVENT.c.contact_id.is_not(None))).all()
        data = StoredData.load(conn, [e.contact_id for e in events], [e.id for e in events])
        for event in events:
            if event.contact_id not in data.contacts:
                continue
            for campaign in campaigns:
                stats.created += _enrol(conn, workspace, campaign, event, data, settings, now, stats)
    return stats


def _enrol(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    event: StoreRow,
    data: StoredData,
    settings: Settings,
    now: datetime,
    stats: EnrolStats,
) -> int:
    spec = campaign.trigger.event
    assert spec is not None
    if spec.type != event.type:
        return 0
    zone = campaign_zone(campaign, settings.zone)
    if campaign.window is not None and not campaign.window.contains(
        event.occurred_at.astimezone(zone).date()
    ):
        return 0
    if spec.where:
        try:
            if not _matches(campaign, spec.where, event, data, settings, now):
                return 0
        except Exception as exc:  # noqa: BLE001 — a marketer's expression, evaluated in the sandbox
            stats.expression_errors[campaign.key] += 1
            reason = expression_reason(campaign, None, spec.where, exc)
            LOG.warning("campaign %s: event %s not enrolled: %s", campaign.key, event.id, reason)
            _record_failed_where(conn, campaign, event, reason, now)
            return 0
    occurrence = event_occurrence(event.id, event.occurred_at, once=spec.once_per_contact)
    ctx = AudienceContext(reference=event.occurred_at, zone=zone)
    # The buyer's own eligibility matters only for what is sent to the buyer: a flow whose every send
    # goes to the card's recipient is checked against the recipient at send time (the gate).
    to_buyer = any(
        step.send.to != "recipient" for step in campaign.iter_steps() if isinstance(step, SendStep)
    )
    selected = and_(
        CONTACT.c.id == event.contact_id,
        audience_condition(workspace, campaign, ctx),
        eligibility(campaign, campaign_filters(workspace, campaign)) if to_buyer else true(),
    )
    facts = event_facts(event, data.contacts[event.contact_id], settings)
    stamp = literal(now, UTCDateTime())
    held = in_holdout(campaign, int(event.contact_id))  # enrolled, and ended at once: counted, never sent
    values = select(
        literal(campaign.key, String()),
        CONTACT.c.id,
        literal(occurrence.key, String()),
        literal(event.id, Integer()),
        literal("exited" if held else "active", String()),
        literal(campaign.first_path(), String()),
        literal(None if held else now, UTCDateTime()),
        literal({}, JSONType),
        literal(facts.to_json(), JSONType),
        stamp,
        stamp,
        literal(now if held else None, UTCDateTime()),
        literal(HOLDOUT if held else None, String()),
    ).where(selected)
    statement = (
        insert_for(conn, ENROLMENT)
        .from_select(COLUMNS, values)
        .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id", "occurrence"])
    )
    return max(int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount or 0), 0)


def _record_failed_where(
    conn: Connection, campaign: Campaign, event: StoreRow, reason: str, now: datetime
) -> None:
    """The named outcome of an event the trigger's ``where`` failed on: an enrolment ended at once."""
    occurrence = event_occurrence(event.id, event.occurred_at, once=False)
    statement = (
        insert_for(conn, ENROLMENT)
        .values(
            campaign_id=campaign.key,
            contact_id=event.contact_id,
            occurrence=f"where-{occurrence.key}",
            event_id=event.id,
            state=EnrolmentState.exited.value,
            step_path=campaign.first_path(),
            wake_at=None,
            variants={},
            context={},
            created_at=now,
            updated_at=now,
            ended_at=now,
            end_reason=reason,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id", "occurrence"])
    )
    conn.execute(statement)


__all__ = ["EnrolStats", "enrol_for_events", "event_facts"]
