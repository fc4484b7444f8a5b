"""The circuit breaker: a campaign that hurts the sender's reputation stops itself.

December volume is when a sender's reputation is won or lost; since late 2025 Gmail rejects
non-compliant bulk mail outright. So after every batch of feedback (the SendGrid webhook), the
campaigns it concerns are reviewed: over their sends of the last ``TIDINGS_BREAKER_WINDOW_DAYS``,
hard bounces above ``TIDINGS_BREAKER_BOUNCE_RATE`` (5 %) or spam complaints above
``TIDINGS_BREAKER_COMPLAINT_RATE`` (0.3 %, the Gmail/Yahoo bulk-sender limit) pause the campaign
(``campaign_state``, the same pause as ``tidings pause``) with a named reason — once it has at least
``TIDINGS_BREAKER_MIN_SENDS`` sends in the window, so a handful of early events cannot stop it.
``tidings resume CAMPAIGN`` continues it; the breaker trips again only on new evidence.

A bounce or complaint counts once per delivery (SendGrid repeats events); a bounce counts against
the campaign of the delivery it names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection, Engine

from engine.clock import Clock
from engine.runtime.controls import control_of, pause
from engine.settings import Settings
from engine.store.models import CampaignControl, Delivery, DeliveryEvent, DeliveryState

log = logging.getLogger("tidings.breaker")

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
EVENT: Table = DeliveryEvent.__table__  # type: ignore[attr-defined]
#: The note a breaker pause carries (``campaign_state.note``): stats and the preview show it.
NOTE_PREFIX = "breaker: "
BOUNCES = ("bounce",)
COMPLAINTS = ("spamreport",)


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    complaint_rate: float
    bounce_rate: float
    min_sends: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerLimits:
        return cls(
            settings.breaker_complaint_rate,
            settings.breaker_bounce_rate,
            settings.breaker_min_sends,
            timedelta(days=settings.breaker_window_days),
        )


@dataclass(frozen=True, slots=True)
class Trip:
    """A campaign the breaker paused, and why."""

    campaign_id: str
    what: str  # "spam complaints" | "hard bounces"
    count: int
    sends: int
    limit: float

    @property
    def rate(self) -> float:
        return self.count / self.sends

    @property
    def reason(self) -> str:
        return (
            f"{self.what} {self.rate:.2%} ({self.count} of {self.sends:,} sends in the window; "
            f"limit {self.limit:.2%})"
        )


def _counts(conn: Connection, campaign_id: str, since: datetime) -> tuple[int, int, int]:
    """(sends, hard-bounced deliveries, complained-about deliveries) of the campaign since ``since``."""
    sent = (
        select(DELIVERY.c.id)
        .where(
            DELIVERY.c.campaign_id == campaign_id,
            DELIVERY.c.state == DeliveryState.sent.value,
            DELIVERY.c.sent_at >= since,
        )
        .subquery()
    )
    sends = int(conn.execute(select(func.count()).select_from(sent)).scalar_one())

    def affected(kinds: tuple[str, ...]) -> int:
        query = select(func.count(func.distinct(EVENT.c.delivery_id))).where(
            EVENT.c.delivery_id.in_(select(sent.c.id)), EVENT.c.type.in_(kinds)
        )
        return int(conn.execute(query).scalar_one())

    return sends, affected(BOUNCES), affected(COMPLAINTS)


def verdict(conn: Connection, campaign_id: str, now: datetime, limits: BreakerLimits) -> Trip | None:
    """The reason to pause this campaign now, or None."""
    sends, bounces, complaints = _counts(conn, campaign_id, now - limits.window)
    if sends < limits.min_sends:
        return None
    if complaints / sends > limits.complaint_rate:
        return Trip(campaign_id, "spam complaints", complaints, sends, limits.complaint_rate)
    if bounces / sends > limits.bounce_rate:
        return Trip(campaign_id, "hard bounces", bounces, sends, limits.bounce_rate)
    return None


def review(engine: Engine, campaign_ids: Iterable[str], *, clock: Clock, limits: BreakerLimits) -> list[Trip]:
    """Pause every active campaign among ``campaign_ids`` whose rates pass the limits."""
    trips: list[Trip] = []
    now = clock.now()
    for campaign_id in sorted(set(campaign_ids)):
        with engine.connect() as conn:
            if control_of(conn, campaign_id) != CampaignControl.active.value:
                continue
            trip = verdict(conn, campaign_id, now, limits)
        if trip is None:
            continue
        pause(engine, campaign_id, clock, note=NOTE_PREFIX + trip.reason)
        log.warning("campaign %s paused by the circuit breaker: %s", campaign_id, trip.reason)
        trips.append(trip)
    return trips


def campaigns_of_deliveries(conn: Connection, delivery_ids: Iterable[int]) -> set[str]:
    ids = sorted({int(d) for d in delivery_ids})
    found: set[str] = set()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        found.update(conn.execute(select(DELIVERY.c.campaign_id).where(DELIVERY.c.id.in_(chunk))).scalars())
    return found


__all__ = ["NOTE_PREFIX", "BreakerLimits", "Trip", "campaigns_of_deliveries", "review", "verdict"]
