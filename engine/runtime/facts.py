"""What was decided about a message when it was planned, written on its outbox row.

The planner decides, per group of contacts, when a message goes out and from which facts: the
shipping cutoff it counts from, the named date of a calendar trigger, the moment of the
occurrence, the zone used for the contact. A flow adds what its own steps decide (the coupon of a
``coupon`` step, the event that enrolled the contact); an agent's goodwill message the coupon given
and the order it is about (``order_id``). :class:`MessageFacts` holds exactly those,
and is stored as JSON in ``delivery.context`` (``enrolment.context`` and ``post.context`` too).

Sending renders from the row's facts plus the contact's stored data, and never decides any of
them again: the dispatcher does not look up a cutoff, and ``plan`` shows the facts it would write.
(Before round 2 the planner wrote an empty context and the dispatcher recomputed the cutoff with
a second algorithm; ``plan`` then disagreed with what was sent.)

The JSON is plain and stable: ISO dates and date-times, money as strings, so that a row written
today reads back the same tomorrow, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from engine.runtime.zones import ResolvedZone, ZoneSource, known_zone
from engine.workspace.schedules import Cutoff

#: Shown instead of a coupon code where a coupon step has not run for real (``render --campaign``,
#: ``plan``): the message is otherwise exactly the one that will be sent.
PLACEHOLDER_CODE = "PREVIEW-CODE"


@dataclass(frozen=True, slots=True)
class CouponFact:
    """A coupon a flow issued to the contact (or a placeholder where none was issued yet)."""

    code: str
    percent: Decimal
    expires_at: datetime | None
    placeholder: bool = False

    def as_context(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "percent": self.percent,
            "expires_at": self.expires_at,
            "placeholder": self.placeholder,
        }


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """The facts a message is rendered from, decided once (see the module docstring).

    ``zone`` is None only on rows planned before round 2 (the dispatcher then resolves it from the
    contact, with the same rule the planner uses).
    """

    occurrence_at: datetime | None = None
    zone: str | None = None
    zone_source: ZoneSource | None = None
    trigger_date: date | None = None
    cutoff: Cutoff | None = None
    event_id: int | None = None
    enrolment_id: int | None = None
    coupon: CouponFact | None = None
    order_id: str | None = None  # the shop's id of the order the message is about (else the event's)

    # --- building ----------------------------------------------------------------------------

    def with_zone(self, resolved: ResolvedZone) -> MessageFacts:
        return replace(self, zone=resolved.name, zone_source=resolved.source)

    def with_coupon(self, coupon: CouponFact) -> MessageFacts:
        return replace(self, coupon=coupon)

    def with_enrolment(self, enrolment_id: int | None, event_id: int | None) -> MessageFacts:
        return replace(self, enrolment_id=enrolment_id, event_id=event_id if event_id else self.event_id)

    @property
    def zone_info(self) -> ZoneInfo | None:
        return known_zone(self.zone)

    @property
    def planned(self) -> bool:
        """Whether these facts were written by a round-2 planner (legacy rows carry no zone)."""
        return self.zone is not None

    # --- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.occurrence_at is not None:
            data["occurrence_at"] = self.occurrence_at.isoformat()
        if self.zone is not None:
            data["zone"] = self.zone
            data["zone_source"] = self.zone_source
        if self.trigger_date is not None:
            data["trigger_date"] = self.trigger_date.isoformat()
        if self.cutoff is not None:
            data["cutoff"] = cutoff_to_json(self.cutoff)
        if self.event_id is not None:
            data["event_id"] = self.event_id
        if self.enrolment_id is not None:
            data["enrolment_id"] = self.enrolment_id
        if self.coupon is not None:
            data["coupon"] = {
                "code": self.coupon.code,
                "percent": str(self.coupon.percent),
                "expires_at": self.coupon.expires_at.isoformat() if self.coupon.expires_at else None,
            }
        if self.order_id is not None:
            data["order_id"] = self.order_id
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> MessageFacts:
        data = dict(data or {})
        coupon = data.get("coupon")
        return cls(
            occurrence_at=_moment(data.get("occurrence_at")),
            zone=data.get("zone") or None,
            zone_source=data.get("zone_source") or None,
            trigger_date=_day(data.get("trigger_date")),
            cutoff=_cutoff(data.get("cutoff")),
            event_id=int(data["event_id"]) if data.get("event_id") else None,
            enrolment_id=int(data["enrolment_id"]) if data.get("enrolment_id") else None,
            coupon=CouponFact(
                code=str(coupon["code"]),
                percent=Decimal(str(coupon["percent"])),
                expires_at=_moment(coupon.get("expires_at")),
            )
            if isinstance(coupon, dict) and coupon.get("code")
            else None,
            order_id=str(data["order_id"]) if data.get("order_id") else None,
        )


def cutoff_to_json(cutoff: Cutoff) -> dict[str, Any]:
    return {
        "country": cutoff.country,
        "method": cutoff.method,
        "carrier": cutoff.carrier,
        "order_by": cutoff.order_by.replace(tzinfo=None).isoformat(timespec="minutes"),
        "timezone": cutoff.zone.key,
        "deliver_before": cutoff.deliver_before.isoformat(),
    }


def cutoff_from_json(data: dict[str, Any]) -> Cutoff:
    zone = ZoneInfo(str(data["timezone"]))
    return Cutoff(
        country=str(data["country"]),
        method=str(data["method"]),
        carrier=str(data["carrier"]),
        order_by=datetime.fromisoformat(str(data["order_by"])).replace(tzinfo=zone),
        deliver_before=date.fromisoformat(str(data["deliver_before"])),
    )


def _cutoff(value: object) -> Cutoff | None:
    if not isinstance(value, dict) or "timezone" not in value:
        return None  # absent, or the pre-round-2 shape without a zone: not a decision this row made
    return cutoff_from_json(value)


def _moment(value: object) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else None


def _day(value: object) -> date | None:
    return date.fromisoformat(str(value)) if value else None


__all__ = ["PLACEHOLDER_CODE", "CouponFact", "MessageFacts", "cutoff_from_json", "cutoff_to_json"]
