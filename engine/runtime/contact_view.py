"""One real contact's message from one campaign, as it will be sent: ``render --contact``, the preview.

``tidings render TEMPLATE --contact REF --campaign ID [--at MOMENT]`` and the preview's contact
picker show "this contact's message" by asking the planner what it decides for the contact
(:func:`engine.runtime.planner.plan_contact`: the same cells, so the same cutoff, zone, trigger
date and send time) and building the context the one way (:mod:`engine.runtime.message_context`).

Which occurrence: the campaign's latest fire at or before the moment, else its next one (a
campaign previewed in early December shows the reminder its first December fire will send), else a
manual one. For an event trigger, the contact's latest event of that type at or before the moment.
The moment the message is rendered at (``now``, ``days_until``) is ``--at`` when given, else the
contact's own planned send time.

A flow's coupon code is shown as issued when the contact has it, else as a placeholder
(:func:`engine.runtime.compose.placeholder_coupon`), and the view says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from engine.runtime.compose import placeholder_coupon
from engine.runtime.delivery_locale import delivery_locale
from engine.runtime.facts import CouponFact, MessageFacts
from engine.runtime.message_context import StoredData, StoreRow, message_context
from engine.runtime.occurrences import (
    Occurrence,
    current_occurrence,
    due_occurrences,
    event_occurrence,
    manual_occurrence,
)
from engine.runtime.planner import ContactPlan, plan_contact
from engine.settings import Settings
from engine.store.models import Contact, Coupon, ShopEvent
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign, PostStep, SendStep

CONTACT: Table = Contact.__table__  # type: ignore[attr-defined]
COUPON: Table = Coupon.__table__  # type: ignore[attr-defined]
EVENT: Table = ShopEvent.__table__  # type: ignore[attr-defined]
HORIZON = timedelta(days=400)

#: Why a contact would get nothing, in words (``plan`` and the preview say the same).
EXCLUSIONS = {
    "not_in_audience": "is not in the campaign's audience",
    "not_eligible": "has no consent or is suppressed",
    "no_cutoff": "has no shipping cutoff for their country",
    "outside_window": "falls outside the campaign's window",
    "draft": "is a draft campaign",
    "paused": "is paused",
}


class ContactNotFound(LookupError):
    """No contact with that id or address."""


def find_contact(conn: Connection, ref: str | int) -> StoreRow | None:
    """A contact by id (digits) or by email address (case-insensitive, as stored)."""
    text = str(ref).strip()
    condition = CONTACT.c.id == int(text) if text.isdigit() else CONTACT.c.email == text.lower()
    return conn.execute(select(CONTACT).where(condition)).first()


@dataclass
class ContactView:
    """What the campaign would send this contact: the planner's decision and the message's context."""

    campaign: Campaign
    step: SendStep | PostStep | None
    occurrence: Occurrence
    plan: ContactPlan
    facts: MessageFacts
    data: StoredData
    contact_id: int
    now: datetime
    notes: list[str] = field(default_factory=list)

    @property
    def contact(self) -> StoreRow:
        return self.data.contacts[self.contact_id]

    @property
    def locale(self) -> str | None:
        """The language the send uses: the contact's, unless the campaign or step forces one
        (:mod:`engine.runtime.delivery_locale`, as the planner writes it on the row)."""
        own = self.contact.locale
        if isinstance(self.step, SendStep):
            return delivery_locale(own, self.campaign.forced_locales(self.step))
        return own

    def context(self, settings: Settings) -> dict[str, Any]:
        return message_context(
            settings, self.campaign, self.facts, self.data, contact_id=self.contact_id, now=self.now
        )


def _occurrence_at(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    contact_id: int,
    moment: datetime,
    settings: Settings,
) -> tuple[Occurrence, int | None]:
    """The occurrence in effect at ``moment`` (see the module docstring) and, for events, the event."""
    trigger = campaign.trigger.event
    if trigger is not None:
        event = conn.execute(
            select(EVENT.c.id, EVENT.c.occurred_at)
            .where(
                EVENT.c.contact_id == contact_id,
                EVENT.c.type == str(trigger.type),
                EVENT.c.occurred_at <= moment,
            )
            .order_by(EVENT.c.occurred_at.desc(), EVENT.c.id.desc())
            .limit(1)
        ).first()
        if event is None:
            return manual_occurrence(
                campaign, moment, default_zone=settings.zone, schedules=workspace.schedules
            ), None
        return event_occurrence(event.id, event.occurred_at, once=trigger.once_per_contact), int(event.id)
    current = current_occurrence(campaign, moment, workspace.schedules, default_zone=settings.zone)
    if current.kind != "manual":
        return current, None
    upcoming = due_occurrences(
        campaign,
        workspace.schedules,
        moment,
        moment + HORIZON,
        default_zone=settings.zone,
        include_inactive=True,
    )
    return (upcoming[0] if upcoming else current), None


def _issued_coupon(
    conn: Connection, campaign: Campaign, contact_id: int, occurrence: str
) -> CouponFact | None:
    row = conn.execute(
        select(COUPON.c.code, COUPON.c.percent, COUPON.c.expires_at)
        .where(
            COUPON.c.campaign_id == campaign.key,
            COUPON.c.contact_id == contact_id,
            COUPON.c.occurrence == occurrence,
        )
        .order_by(COUPON.c.id.desc())
        .limit(1)
    ).first()
    return CouponFact(row.code, row.percent, row.expires_at) if row is not None else None


def contact_view(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    template: str | None,
    contact_ref: str | int,
    *,
    settings: Settings,
    now: datetime,
    at: datetime | None = None,
) -> ContactView:
    """The campaign's message for one contact (see the module docstring); ``template`` picks the step."""
    found = find_contact(conn, contact_ref)
    if found is None:
        raise ContactNotFound(f"no contact {contact_ref!r} in the database (give an email address or an id)")
    contact_id = int(found.id)
    moment = at or now
    occurrence, event_id = _occurrence_at(conn, workspace, campaign, contact_id, moment, settings)
    planned = plan_contact(conn, workspace, campaign, occurrence, contact_id, settings=settings, now=moment)
    facts = planned.facts
    if event_id is not None:
        facts = replace(facts, event_id=event_id)
    step = next(
        (
            s
            for s in campaign.iter_steps()
            if isinstance(s, SendStep | PostStep) and (template is None or template in s.templates())
        ),
        None,
    )
    notes = [f"occurrence {occurrence.key}"]
    if campaign.trigger.event is not None and event_id is None:
        notes.append(f"the contact has no {campaign.trigger.event.type} event yet: rendered without one")
    if isinstance(step, SendStep):
        issued = _issued_coupon(conn, campaign, contact_id, occurrence.key)
        coupon = issued or placeholder_coupon(campaign, step, at or planned.instant or now)
        if coupon is not None:
            facts = facts.with_coupon(coupon)
            if coupon.placeholder:
                notes.append("the coupon code is a placeholder: the flow issues the real one")
    if planned.excluded is not None:
        notes.append(f"this contact would not get it: {EXCLUSIONS.get(planned.excluded, planned.excluded)}")
    elif planned.instant is not None:
        zone = facts.zone_info
        local = planned.instant.astimezone(zone) if zone is not None else planned.instant
        notes.append(f"its send time: {local:%Y-%m-%d %H:%M} {local.tzname()} ({facts.zone})")
    data = StoredData.load(conn, [contact_id], [facts.event_id] if facts.event_id else [])
    render_at = at or planned.instant or now
    return ContactView(campaign, step, occurrence, planned, facts, data, contact_id, render_at, notes)


__all__ = ["EXCLUSIONS", "ContactNotFound", "ContactView", "contact_view", "find_contact"]
