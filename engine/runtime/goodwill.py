"""Goodwill from customer care: an agent gives a customer a coupon and the apology goes out at once.

``tidings care goodwill EMAIL --percent 15 --reason "late delivery" [--order ID]`` and
``POST /care/goodwill`` both call :func:`give_goodwill`, which in one transaction:

1. checks the request: a percent above 0 and at most ``TIDINGS_CARE_MAX_PERCENT`` (an agent's
   cap: a larger gesture is a manager's, outside this tool), a one-line reason, a known contact
   and, when given, an order of that contact (an apology about someone else's order, or about a
   typo, must not go out);
2. issues a unique code (:mod:`engine.runtime.coupons`, prefix ``CARE``) valid through the end of
   the day ``TIDINGS_CARE_COUPON_DAYS`` from now in the customer's zone, recording who gave it
   (the CLI's ``--agent``, the API token's label), why and for which order;
3. writes the apology as a transactional outbox row of the built-in campaign ``care-goodwill``,
   due now, keyed by :func:`engine.runtime.keys.delivery_key`, its facts holding the coupon and
   the order: the dispatcher sends it like any other row (``goodwill-apology`` in the customer's
   language, through the policy gate: a hard-bounced address is skipped and says so).

A request with an idempotency key (the API's ``Idempotency-Key``, scoped by the token's label)
that was seen before returns the coupon and message it made, unchanged; the same key with a
different request is refused (the IETF idempotency-key draft's 422), never a second coupon.

The built-in campaign is not a workspace file: nothing fires it, the dispatcher knows it through
:func:`sending_campaigns`, and its rows show in ``stats`` and ``simulate`` under its id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Engine

from engine.errors import TidingsError
from engine.inbound import InvalidValue, email_address, single_line
from engine.runtime.coupons import Grant, IssuedCoupon, coupon_for_request, issue_coupon
from engine.runtime.facts import CouponFact, MessageFacts
from engine.runtime.keys import delivery_key, new_message_token
from engine.runtime.local_time import local_instant
from engine.runtime.zones import resolve_zone
from engine.settings import Settings
from engine.store.database import write_transaction
from engine.store.dialect import insert_for
from engine.store.models import Contact, Delivery, DeliveryState, ShopOrder
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign

CARE_CAMPAIGN_ID = "care-goodwill"
GOODWILL_STEP = "goodwill"
GOODWILL_TEMPLATE = "goodwill-apology"
COUPON_PREFIX = "CARE"
REASON_MAX = 500
ORDER_MAX = 255

CONTACT: Table = Contact.__table__  # type: ignore[attr-defined]
ORDER: Table = ShopOrder.__table__  # type: ignore[attr-defined]
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]


class GoodwillRefused(TidingsError):
    """A request that gives nothing: ``field`` names what is wrong (the API answers 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, exit_code=2)
        self.field = field


@dataclass(frozen=True, slots=True)
class GoodwillRequest:
    """What an agent asks for. ``agent`` is who (recorded); ``request_key`` makes a retry safe."""

    email: str
    percent: Decimal | str  # checked by check_percent (the CLI passes the text it was given)
    reason: str
    agent: str
    order_id: str | None = None
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class Goodwill:
    """A coupon given and the apology that carries it (``repeated`` when a retry found them)."""

    coupon: IssuedCoupon
    contact_id: int
    email: str
    delivery_id: int
    delivery_state: str
    order_id: str | None
    issued_by: str
    reason: str
    repeated: bool = False

    def as_dict(self) -> dict[str, Any]:
        percent = self.coupon.percent
        return {
            "coupon": {
                "code": self.coupon.code,
                "percent": int(percent) if percent == percent.to_integral_value() else float(percent),
                "expires_at": self.coupon.expires_at.isoformat() if self.coupon.expires_at else None,
            },
            "contact": {"id": self.contact_id, "email": self.email},
            "order_id": self.order_id,
            "issued_by": self.issued_by,
            "reason": self.reason,
            "message": {
                "delivery_id": self.delivery_id,
                "template": GOODWILL_TEMPLATE,
                "state": self.delivery_state,
            },
            "repeated": self.repeated,
        }


@lru_cache(maxsize=8)
def care_campaign(timezone: str) -> Campaign:
    """The built-in transactional campaign whose rows carry agents' apologies (never fired by a trigger)."""
    campaign = Campaign.model_validate(
        {
            "id": CARE_CAMPAIGN_ID,
            "name": "Goodwill from customer care",
            "status": "active",
            "category": "transactional",
            "timezone": timezone,
            "trigger": {"event": {"type": "custom.care.goodwill"}},
            "steps": [{"id": GOODWILL_STEP, "send": {"channel": "email", "template": GOODWILL_TEMPLATE}}],
        }
    )
    return campaign


def sending_campaigns(workspace: Workspace, settings: Settings) -> dict[str, Campaign]:
    """The campaigns outbox rows may belong to: the workspace's and customer care's own.

    A workspace campaign with the id ``care-goodwill`` takes precedence (a shop may restyle it).
    """
    return {CARE_CAMPAIGN_ID: care_campaign(settings.timezone), **workspace.campaigns}


# --- checking a request ---------------------------------------------------------------------------


def check_percent(value: object, settings: Settings) -> Decimal:
    """A percent an agent may give: above 0, at most two decimals, not above the cap."""
    try:
        percent = Decimal(str(value).strip().rstrip("%"))
    except (InvalidOperation, ValueError):
        raise GoodwillRefused("percent", f"percent must be a number such as 15, got {value!r}") from None
    if not percent.is_finite() or percent <= 0:
        raise GoodwillRefused("percent", f"percent must be above 0, got {value}")
    cap = settings.care_max_percent
    if percent > cap:
        raise GoodwillRefused(
            "percent",
            f"{percent.normalize():f}% is more than an agent may give: at most {cap.normalize():f}% "
            "(TIDINGS_CARE_MAX_PERCENT)",
        )
    if percent != percent.quantize(Decimal("0.01")):
        raise GoodwillRefused("percent", f"percent takes at most two decimals, got {value}")
    return percent


def check_text(field: str, value: str | None, limit: int, *, required: bool) -> str | None:
    """One line of at most ``limit`` characters (a reason, an order id; :mod:`engine.inbound`'s rule);
    blank is absent."""
    text = (value or "").strip()
    if not text:
        if required:
            raise GoodwillRefused(field, f"{field} is required: say why (it is recorded with the coupon)")
        return None
    try:
        return single_line(text, field=field, max_length=limit)
    except InvalidValue as exc:
        raise GoodwillRefused(field, str(exc)) from None


def check_email(value: str) -> str:
    """The address as contacts are stored (:func:`engine.inbound.email_address`)."""
    try:
        return email_address(value)
    except InvalidValue as exc:
        raise GoodwillRefused("email", str(exc)) from None


# --- giving ---------------------------------------------------------------------------------------


def give_goodwill(
    engine: Engine, workspace: Workspace, settings: Settings, request: GoodwillRequest, *, now: datetime
) -> Goodwill:
    """Issue the coupon and write its apology (see the module docstring); :class:`GoodwillRefused`."""
    percent = check_percent(request.percent, settings)
    reason = check_text("reason", request.reason, REASON_MAX, required=True)
    assert reason is not None
    order_id = check_text("order_id", request.order_id, ORDER_MAX, required=False)
    agent = check_text("agent", request.agent, 100, required=True)
    assert agent is not None
    info = workspace.templates.get(GOODWILL_TEMPLATE)
    if info is None or not info.has_email:
        raise GoodwillRefused(
            "template",
            f"the workspace has no {GOODWILL_TEMPLATE} email (templates/{GOODWILL_TEMPLATE}/email.mjml): "
            "nothing to send the coupon with",
        )
    email = check_email(request.email)
    wanted = replace(request, email=email, percent=percent, reason=reason, order_id=order_id, agent=agent)
    with write_transaction(engine) as conn:
        if request.request_key is not None:
            earlier = coupon_for_request(conn, request.request_key)
            if earlier is not None:
                return _repeat(conn, earlier, wanted)
        contact = conn.execute(select(CONTACT).where(CONTACT.c.email == email)).first()
        if contact is None:
            raise GoodwillRefused("email", f"no customer with the address {email}")
        if order_id is not None:
            owner = conn.execute(select(ORDER.c.contact_id).where(ORDER.c.external_id == order_id)).first()
            if owner is None:
                raise GoodwillRefused("order_id", f"no order {order_id} in the store")
            if owner.contact_id != contact.id:
                raise GoodwillRefused("order_id", f"order {order_id} is not {email}'s")
        zone = resolve_zone(contact.timezone, contact.country, cutoff_zone=None, default=settings.zone)
        last_day = (now.astimezone(zone.zone) + timedelta(days=settings.care_coupon_days)).date()
        occurrence = f"{GOODWILL_STEP}-{new_message_token()}"
        coupon = issue_coupon(
            conn,
            campaign_id=CARE_CAMPAIGN_ID,
            coupon_id=GOODWILL_STEP,
            contact_id=int(contact.id),
            occurrence=occurrence,
            percent=percent,
            prefix=COUPON_PREFIX,
            now=now,
            expires_at=local_instant(last_day, time(23, 59), zone.zone),
            grant=Grant(agent, reason, order_id, request.request_key),
        )
        if coupon.occurrence != occurrence:  # a concurrent request with the same key made it first
            return _repeat(conn, coupon, wanted)
        facts = MessageFacts(
            occurrence_at=now,
            coupon=CouponFact(coupon.code, coupon.percent, coupon.expires_at),
            order_id=order_id,
        ).with_zone(zone)
        key = delivery_key(CARE_CAMPAIGN_ID, GOODWILL_STEP, int(contact.id), occurrence)
        conn.execute(
            insert_for(conn, DELIVERY)
            .values(
                idempotency_key=key,
                campaign_id=CARE_CAMPAIGN_ID,
                step_id=GOODWILL_STEP,
                contact_id=contact.id,
                channel="email",
                category="transactional",
                template=GOODWILL_TEMPLATE,
                locale=contact.locale,
                occurrence=occurrence,
                scheduled_for=now,
                state=DeliveryState.pending.value,
                attempts=0,
                created_at=now,
                context=facts.to_json(),
                message_token=new_message_token(),
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        row = _delivery(conn, key)
    return Goodwill(coupon, int(contact.id), email, row.id, row.state, order_id, agent, reason)


def _delivery(conn: Connection, key: str) -> Any:
    return conn.execute(
        select(DELIVERY.c.id, DELIVERY.c.state).where(DELIVERY.c.idempotency_key == key)
    ).one()


def _repeat(conn: Connection, earlier: IssuedCoupon, wanted: GoodwillRequest) -> Goodwill:
    """The answer to a request seen before: the same coupon, or a refusal if it asked for something else."""
    grant = earlier.grant
    assert grant is not None and earlier.contact_id is not None and earlier.occurrence is not None
    email = conn.execute(select(CONTACT.c.email).where(CONTACT.c.id == earlier.contact_id)).scalar()
    same = (
        email == wanted.email
        and earlier.percent == wanted.percent
        and grant.reason == wanted.reason
        and grant.order_id == wanted.order_id
    )
    if not same:
        raise GoodwillRefused(
            "idempotency_key",
            "this Idempotency-Key was used for a different request (another customer, percent, reason "
            "or order); use a new key for a new gift",
        )
    row = _delivery(
        conn, delivery_key(CARE_CAMPAIGN_ID, GOODWILL_STEP, earlier.contact_id, earlier.occurrence)
    )
    return Goodwill(
        earlier,
        earlier.contact_id,
        wanted.email,
        row.id,
        row.state,
        grant.order_id,
        grant.issued_by,
        grant.reason,
        repeated=True,
    )


__all__ = [
    "CARE_CAMPAIGN_ID",
    "GOODWILL_TEMPLATE",
    "Goodwill",
    "GoodwillRefused",
    "GoodwillRequest",
    "care_campaign",
    "check_percent",
    "give_goodwill",
    "sending_campaigns",
]
