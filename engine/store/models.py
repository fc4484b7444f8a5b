"""The store's tables. Table and column names are part of the interface: shops query them.

Times are aware (stored as UTC). Money is ``Decimal`` with two places. Email addresses
are stored lower-cased. Free-form data (tags, custom attributes, event payloads) is JSON.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
from sqlalchemy import Column, Date, Index, Numeric, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from engine.store.types import JSONType, UTCDateTime


def _dt(**kwargs: Any) -> Any:
    nullable = kwargs.pop("nullable", True)
    index = kwargs.pop("index", False)
    return Field(
        default=kwargs.pop("default", None), sa_column=Column(UTCDateTime(), nullable=nullable, index=index)
    )


def _json(default_factory: Any) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSONType, nullable=False))


def _money(default: Decimal | None = Decimal("0.00"), nullable: bool = False) -> Any:
    return Field(default=default, sa_column=Column(Numeric(12, 2), nullable=nullable))


def valid_zone(value: str | None) -> str | None:
    """An IANA zone name, or an error that says which value was wrong."""
    if value is None or value == "":
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Bucharest)") from None
    return value


class Channel(StrEnum):
    email = "email"
    x = "x"
    sms = "sms"


class OrderStatus(StrEnum):
    placed = "placed"
    shipped = "shipped"
    delivered = "delivered"
    returned = "returned"
    problem = "problem"
    cancelled = "cancelled"


class DeliveryState(StrEnum):
    pending = "pending"
    claimed = "claimed"
    sent = "sent"
    failed = "failed"
    retry = "retry"
    skipped = "skipped"


class EnrolmentState(StrEnum):
    active = "active"
    waiting = "waiting"
    completed = "completed"
    exited = "exited"
    converted = "converted"
    cancelled = "cancelled"


class CampaignControl(StrEnum):
    active = "active"
    paused = "paused"
    cancelled = "cancelled"


class Contact(SQLModel, table=True):
    __tablename__ = "contact"
    model_config = {"validate_assignment": True}  # type: ignore[assignment]

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, index=True, unique=True)
    email: str = Field(index=True, unique=True, max_length=320)
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    country: str | None = Field(default=None, max_length=2, index=True)
    timezone: str | None = None
    x_handle: str | None = None
    tags: list[str] = _json(list)
    attributes: dict[str, Any] = _json(dict)
    first_seen_at: datetime | None = _dt()
    last_order_at: datetime | None = _dt()
    orders_count: int = 0
    total_spent: Decimal = _money()
    created_at: datetime | None = _dt()
    updated_at: datetime | None = _dt()

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        value = value.strip().lower()
        if "@" not in value or value.startswith("@") or value.endswith("@"):
            raise ValueError(f"not an email address: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return valid_zone(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if len(value) != 2 or not value.isalpha():
            raise ValueError(f"expected an ISO 3166 two-letter country code, got {value!r}")
        return value.upper()


class Consent(SQLModel, table=True):
    """One row per grant; a withdrawal sets ``withdrawn_at`` on the open row."""

    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_contact_channel", "contact_id", "channel"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", ondelete="CASCADE")
    channel: str
    granted_at: datetime = _dt(nullable=False)
    withdrawn_at: datetime | None = _dt()
    source: str = "unknown"
    wording_version: str | None = None
    legal_basis: str = "consent"
    withdrawn_source: str | None = None


class ShopOrder(SQLModel, table=True):
    __tablename__ = "shop_order"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(index=True, unique=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    status: str = OrderStatus.placed.value
    placed_at: datetime = _dt(nullable=False, index=True)
    shipped_at: datetime | None = _dt()
    delivered_at: datetime | None = _dt()
    returned_at: datetime | None = _dt()
    problem: str | None = None
    shipping_country: str | None = Field(default=None, max_length=2)
    shipping_method: str | None = None
    total: Decimal = _money()
    currency: str = "EUR"
    is_gift: bool = False
    items: list[dict[str, Any]] = _json(list)


class GiftCard(SQLModel, table=True):
    __tablename__ = "gift_card"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(index=True, unique=True)
    code_last4: str | None = None
    purchaser_contact_id: int | None = Field(default=None, foreign_key="contact.id", ondelete="SET NULL")
    recipient_contact_id: int | None = Field(
        default=None, foreign_key="contact.id", index=True, ondelete="SET NULL"
    )
    amount: Decimal = _money()
    balance: Decimal = _money()
    currency: str = "EUR"
    issued_at: datetime = _dt(nullable=False)
    redeemed_at: datetime | None = _dt()
    is_digital: bool = True


class ShopEvent(SQLModel, table=True):
    """A shop event; ``external_id`` is the shop's own id and makes ingestion idempotent."""

    __tablename__ = "shop_event"
    __table_args__ = (Index("ix_shop_event_contact_type", "contact_id", "type", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(index=True, unique=True)
    type: str = Field(index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", ondelete="CASCADE")
    occurred_at: datetime = _dt(nullable=False, index=True)
    received_at: datetime | None = _dt()
    processed_at: datetime | None = _dt(index=True)
    payload: dict[str, Any] = _json(dict)


class Suppression(SQLModel, table=True):
    """An address that must not be mailed on a channel (``all`` for every channel)."""

    __tablename__ = "suppression"
    __table_args__ = (UniqueConstraint("email", "channel", name="uq_suppression_email_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True)
    channel: str = "all"
    reason: str
    source: str | None = None
    created_at: datetime = _dt(nullable=False)


class Coupon(SQLModel, table=True):
    """A unique discount code: from a flow's ``coupon`` step, or given by an agent (``care goodwill``).

    An agent's coupon records who gave it (``issued_by``: the CLI's ``--agent`` or the API token's
    label), why (``reason``) and for which order (``order_id``, the shop's id); ``request_key`` is
    the API's ``Idempotency-Key`` (scoped by the token label), so a retried request finds it.
    """

    __tablename__ = "coupon"
    __table_args__ = (
        UniqueConstraint("campaign_id", "coupon_id", "contact_id", "occurrence", name="uq_coupon_issue"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    campaign_id: str
    coupon_id: str
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    occurrence: str = ""
    percent: Decimal = Field(default=Decimal("0"), sa_column=Column(Numeric(5, 2), nullable=False))
    expires_at: datetime | None = _dt()
    created_at: datetime = _dt(nullable=False)
    redeemed_at: datetime | None = _dt()
    issued_by: str | None = None
    reason: str | None = None
    order_id: str | None = None
    request_key: str | None = Field(default=None, unique=True, max_length=255)


class TopicOptOut(SQLModel, table=True):
    """A contact left one topic (``topic:`` of marketing campaigns) and keeps the others."""

    __tablename__ = "topic_opt_out"
    __table_args__ = (UniqueConstraint("contact_id", "topic", name="uq_topic_opt_out"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    topic: str
    created_at: datetime = _dt(nullable=False)
    source: str | None = None


class Snooze(SQLModel, table=True):
    """A contact paused marketing through a day (``through``, in their zone): ``until`` is the first
    instant marketing may reach them again."""

    __tablename__ = "snooze"

    contact_id: int = Field(primary_key=True, foreign_key="contact.id", ondelete="CASCADE")
    through: date = Field(sa_column=Column(Date(), nullable=False))
    until: datetime = _dt(nullable=False)
    created_at: datetime = _dt(nullable=False)
    source: str | None = None


class CampaignState(SQLModel, table=True):
    """Operator overrides of a campaign's YAML status: pause, resume, cancel."""

    __tablename__ = "campaign_state"

    campaign_id: str = Field(primary_key=True)
    control: str = CampaignControl.active.value
    definition_hash: str | None = None
    updated_at: datetime = _dt(nullable=False)
    note: str | None = None


class ChannelState(SQLModel, table=True):
    """A channel that cannot send, whatever the message (a revoked key, no credits, a daily cap).

    ``suspended_until`` empty: until an operator resumes it (``tidings resume --channel``).
    """

    __tablename__ = "channel_state"

    channel: str = Field(primary_key=True)
    reason: str
    suspended_at: datetime = _dt(nullable=False)
    suspended_until: datetime | None = _dt()


class Enrolment(SQLModel, table=True):
    """A contact's walk through a campaign's steps for one occurrence."""

    __tablename__ = "enrolment"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", "occurrence", name="uq_enrolment"),
        Index("ix_enrolment_due", "state", "wake_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(index=True)
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    occurrence: str
    event_id: int | None = Field(default=None, foreign_key="shop_event.id", ondelete="SET NULL")
    state: str = EnrolmentState.active.value
    step_path: str = "0"
    wake_at: datetime | None = _dt()
    waiting_for: str | None = None
    wait_deadline: datetime | None = _dt()
    variants: dict[str, Any] = _json(dict)
    context: dict[str, Any] = _json(dict)
    created_at: datetime = _dt(nullable=False)
    updated_at: datetime = _dt(nullable=False)
    ended_at: datetime | None = _dt()
    end_reason: str | None = None


class Delivery(SQLModel, table=True):
    """The outbox: one row per planned message, unique on its idempotency key."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_due", "state", "scheduled_for"),
        Index("ix_delivery_campaign_occurrence", "campaign_id", "occurrence"),
        Index("ix_delivery_contact_sent", "contact_id", "sent_at"),
        Index("ix_delivery_picked_by", "picked_by"),
        # Rows never handed to the broker: what the publisher looks for on every tick, without
        # walking the published backlog of a large send.
        Index(
            "ix_delivery_unpublished",
            "scheduled_for",
            sqlite_where=text("published_at IS NULL"),
            postgresql_where=text("published_at IS NULL"),
        ),
        # Rows handed to the broker that no worker has taken yet: what the sweeper checks when the
        # broker's queue is empty (a lost message), without walking the outbox.
        Index(
            "ix_delivery_awaiting_pickup",
            "published_at",
            sqlite_where=text("picked_by IS NULL AND published_at IS NOT NULL"),
            postgresql_where=text("picked_by IS NULL AND published_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=255)
    campaign_id: str
    step_id: str
    contact_id: int | None = Field(default=None, foreign_key="contact.id", ondelete="SET NULL")
    enrolment_id: int | None = Field(default=None, foreign_key="enrolment.id", ondelete="SET NULL")
    channel: str = Channel.email.value
    category: str = "marketing"
    template: str
    locale: str | None = None
    variant: str | None = None
    occurrence: str
    scheduled_for: datetime = _dt(nullable=False)
    state: str = DeliveryState.pending.value
    reason: str | None = None
    attempts: int = 0
    last_error: str | None = None
    lease_until: datetime | None = _dt()
    claimed_by: str | None = None
    published_at: datetime | None = _dt()  # last handed to the broker (scale-out); see engine.fanout
    picked_by: str | None = None  # the worker's batch lease ("task:…") that took its broker message
    provider_message_id: str | None = Field(default=None, index=True)
    sent_at: datetime | None = _dt()
    created_at: datetime = _dt(nullable=False)
    updated_at: datetime | None = _dt()
    context: dict[str, Any] = _json(dict)  # the facts the planner decided (engine.runtime.facts)
    message_token: str | None = Field(default=None, max_length=64)  # random, per row: the Message-ID


class Post(SQLModel, table=True):
    """A broadcast social post (no contact), idempotent per campaign, step and occurrence."""

    __tablename__ = "post"
    __table_args__ = (Index("ix_post_due", "state", "scheduled_for"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=255)
    campaign_id: str = Field(index=True)
    step_id: str
    channel: str = Channel.x.value
    template: str
    occurrence: str
    scheduled_for: datetime = _dt(nullable=False)
    state: str = DeliveryState.pending.value
    reason: str | None = None
    attempts: int = 0
    last_error: str | None = None
    lease_until: datetime | None = _dt()
    claimed_by: str | None = None
    published_at: datetime | None = _dt()  # last handed to the broker (scale-out); see engine.fanout
    text: str | None = None
    provider_post_id: str | None = None
    posted_at: datetime | None = _dt()
    created_at: datetime = _dt(nullable=False)
    updated_at: datetime | None = _dt()
    context: dict[str, Any] = _json(dict)  # the facts the planner decided (engine.runtime.facts)


class DeliveryEvent(SQLModel, table=True):
    """Feedback about a sent message (delivered, open, click, bounce, spam report …).

    Deduplicated on the provider's event id.
    """

    __tablename__ = "delivery_event"
    __table_args__ = (Index("ix_delivery_event_delivery_type", "delivery_id", "type"),)

    id: int | None = Field(default=None, primary_key=True)
    provider_event_id: str | None = Field(default=None, unique=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", ondelete="SET NULL")
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True, ondelete="SET NULL")
    email: str | None = None
    type: str = Field(index=True)
    occurred_at: datetime = _dt(nullable=False)
    url: str | None = None
    reason: str | None = None
    payload: dict[str, Any] = _json(dict)


class AbTest(SQLModel, table=True):
    """An A/B test of a send step (``test: {share, decide_after, by}``) and how it was decided.

    One row per campaign, step and occurrence (``*`` for a flow's step: one test across every
    enrolment). ``variants`` lists the arms as the step listed them (``[{label, template}]``, the
    first is the control); ``figures`` holds, once decided, each arm's counts and the test statistic.
    """

    __tablename__ = "ab_test"
    __table_args__ = (
        UniqueConstraint("campaign_id", "step_id", "occurrence", name="uq_ab_test"),
        Index("ix_ab_test_due", "status", "decide_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str
    step_id: str
    occurrence: str
    metric: str  # clicks | conversions | revenue
    share: float  # 0..1 of the audience in the test slice
    variants: list[dict[str, Any]] = _json(list)
    decide_at: datetime = _dt(nullable=False)
    status: str = "testing"  # testing | decided | tie
    winner: str | None = None  # the variant label sent to the rest
    confidence: float | None = None  # 1 - p of the one-sided test that the best beats the runner-up
    figures: dict[str, Any] = _json(dict)
    created_at: datetime = _dt(nullable=False)
    decided_at: datetime | None = _dt()


class Lease(SQLModel, table=True):
    """A named right held by one process until ``expires_at`` unless renewed.

    ``leader``: which ``tidings run`` plans and fires (:mod:`engine.leadership`); ``epoch`` grows
    with every change of holder and fences the writes of a leader that lost it.
    ``task:ID``: a worker's batch in progress (:mod:`engine.fanout.receipts`).
    """

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=255)
    holder: str
    epoch: int = 1
    acquired_at: datetime = _dt(nullable=False)
    renewed_at: datetime = _dt(nullable=False)
    expires_at: datetime = _dt(nullable=False, index=True)


class RateBucket(SQLModel, table=True):
    """A token bucket shared by every process of one store (``engine.runtime.ratelimit``)."""

    __tablename__ = "rate_bucket"

    name: str = Field(primary_key=True, max_length=255)
    tokens: float
    updated_at: datetime = _dt(nullable=False)
    blocked_until: datetime | None = _dt()


class FireState(StrEnum):
    planning = "planning"
    done = "done"
    failed = "failed"


class FireRecord(SQLModel, table=True):
    """A trigger fire, written before it is planned, so that the next leader completes one cut short."""

    __tablename__ = "fire_record"
    __table_args__ = (UniqueConstraint("campaign_id", "occurrence", name="uq_fire_record_occurrence"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str
    occurrence: str
    epoch: int
    state: str = Field(default=FireState.planning.value, index=True)
    error: str | None = None
    started_at: datetime = _dt(nullable=False)
    finished_at: datetime | None = _dt()


ALL_TABLES = [
    Contact,
    Consent,
    ShopOrder,
    GiftCard,
    ShopEvent,
    Suppression,
    Coupon,
    TopicOptOut,
    Snooze,
    CampaignState,
    ChannelState,
    Enrolment,
    Delivery,
    Post,
    DeliveryEvent,
    AbTest,
]

#: Coordination between processes (leases, shared rate buckets, the fire ledger): not shop data,
#: never copied into a simulation.
COORDINATION_TABLES = [Lease, RateBucket, FireRecord]
