"""Operator controls: pause, resume and cancel a campaign at any time.

The control lives in ``campaign_state`` and overrides the YAML ``status``:

* **pause** — nothing more is claimed or sent; pending rows stay pending, flows stop
  advancing. Nothing is skipped, so nothing is lost.
* **resume** — sending continues with what is still pending. Rows already sent are
  ``sent`` and are never claimed again, so a resume cannot re-send them.
* **cancel** — every pending or retrying row (and post) of the campaign becomes
  ``skipped`` with reason ``cancelled``, and active enrolments end as ``cancelled``.
  The rows stay in the outbox for the record ("skipped, not lost"). Rows a
  dispatcher holds at that moment are skipped by its policy gate.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection, Engine

from engine.clock import Clock
from engine.store import write_transaction
from engine.store.models import (
    CampaignControl,
    CampaignState,
    Delivery,
    DeliveryState,
    Enrolment,
    EnrolmentState,
    Post,
)

STATE: Table = CampaignState.__table__  # type: ignore[attr-defined]
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]
ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]

OPEN_STATES = (DeliveryState.pending.value, DeliveryState.retry.value)
LIVE_ENROLMENTS = (EnrolmentState.active.value, EnrolmentState.waiting.value)


@dataclass(frozen=True, slots=True)
class ControlResult:
    campaign_id: str
    control: str
    previous: str
    skipped_deliveries: int = 0
    skipped_posts: int = 0
    cancelled_enrolments: int = 0
    pending: int = 0


def controls(conn: Connection) -> dict[str, str]:
    """Every campaign's operator control (campaigns without a row are ``active``)."""
    return {
        row.campaign_id: row.control for row in conn.execute(select(STATE.c.campaign_id, STATE.c.control))
    }


def control_of(conn: Connection, campaign_id: str) -> str:
    found = conn.execute(select(STATE.c.control).where(STATE.c.campaign_id == campaign_id)).scalar()
    return str(found) if found else CampaignControl.active.value


def _set(conn: Connection, campaign_id: str, control: CampaignControl, clock: Clock, note: str | None) -> str:
    previous = control_of(conn, campaign_id)
    values = {"control": control.value, "updated_at": clock.now(), "note": note}
    changed = conn.execute(update(STATE).where(STATE.c.campaign_id == campaign_id).values(**values)).rowcount
    if not changed:
        conn.execute(STATE.insert().values(campaign_id=campaign_id, **values))
    return previous


def _open_rows(conn: Connection, campaign_id: str) -> int:
    from sqlalchemy import func

    return int(
        conn.execute(
            select(func.count()).where(
                DELIVERY.c.campaign_id == campaign_id, DELIVERY.c.state.in_(OPEN_STATES)
            )
        ).scalar_one()
    ) + int(
        conn.execute(
            select(func.count()).where(POST.c.campaign_id == campaign_id, POST.c.state.in_(OPEN_STATES))
        ).scalar_one()
    )


def pause(engine: Engine, campaign_id: str, clock: Clock, note: str | None = None) -> ControlResult:
    with write_transaction(engine) as conn:
        previous = _set(conn, campaign_id, CampaignControl.paused, clock, note)
        return ControlResult(
            campaign_id, CampaignControl.paused.value, previous, pending=_open_rows(conn, campaign_id)
        )


def resume(engine: Engine, campaign_id: str, clock: Clock, note: str | None = None) -> ControlResult:
    with write_transaction(engine) as conn:
        previous = _set(conn, campaign_id, CampaignControl.active, clock, note)
        return ControlResult(
            campaign_id, CampaignControl.active.value, previous, pending=_open_rows(conn, campaign_id)
        )


def cancel(engine: Engine, campaign_id: str, clock: Clock, note: str | None = None) -> ControlResult:
    now = clock.now()
    with write_transaction(engine) as conn:
        previous = _set(conn, campaign_id, CampaignControl.cancelled, clock, note)
        skipped = {"state": DeliveryState.skipped.value, "reason": "cancelled", "updated_at": now}
        deliveries = conn.execute(
            update(DELIVERY)
            .where(DELIVERY.c.campaign_id == campaign_id, DELIVERY.c.state.in_(OPEN_STATES))
            .values(**skipped)
        ).rowcount
        posts = conn.execute(
            update(POST)
            .where(POST.c.campaign_id == campaign_id, POST.c.state.in_(OPEN_STATES))
            .values(**skipped)
        ).rowcount
        enrolments = conn.execute(
            update(ENROLMENT)
            .where(ENROLMENT.c.campaign_id == campaign_id, ENROLMENT.c.state.in_(LIVE_ENROLMENTS))
            .values(
                state=EnrolmentState.cancelled.value,
                ended_at=now,
                end_reason="cancelled",
                updated_at=now,
                wake_at=None,
            )
        ).rowcount
    return ControlResult(
        campaign_id,
        CampaignControl.cancelled.value,
        previous,
        skipped_deliveries=deliveries or 0,
        skipped_posts=posts or 0,
        cancelled_enrolments=enrolments or 0,
    )
