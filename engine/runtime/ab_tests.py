"""A/B tests that pick their winner: the test slice goes first, the winner goes to the rest.

A send step with ``variants`` and ``test: {share: 20%, decide_after: 4h, by: clicks}``:

* **Planning** (:mod:`engine.runtime.planner`, deliveries mode): the contacts in the test slice
  (:mod:`engine.runtime.splits`) get a variant by weight at their normal send time; the rest are
  planned at their send time + ``decide_after``, with the control's template, no variant and
  ``reason = awaiting_test`` — rows that :mod:`engine.runtime.claims` never claims. The test is
  recorded in ``ab_test`` (:func:`record_test`), due at the *earliest* send of the occurrence +
  ``decide_after``: the moment the first awaiting row is due. With per-contact local times that
  means the zones that send latest may not have sent (or been clicked) by then; deciding later
  would hold the earliest zones' rest past their own send time instead, so the earliest moment wins.
* **Flows** (enrolments): :func:`flow_assignment` answers for one send of one contact: a variant
  by weight in the test slice; otherwise the winner once decided, else a row awaiting the decision
  at the step's first send + ``decide_after`` (one test per flow step, occurrence ``*``).
* **Deciding** (:func:`decide_due_tests`, called by the daemon's tick, ``trigger --wait`` and
  ``simulate`` before they drain): per variant of the test slice, the messages sent by now and the
  metric — clicks (distinct messages with a ``click`` event; a ``machine_open`` is never a click),
  conversions (messages followed by an order within ``TIDINGS_CONVERSION_WINDOW_DAYS``, counted as
  :func:`engine.feedback.stats.order_within` counts them for ``stats``) or revenue per recipient
  (those orders' totals, in the currency that carries most of the test's revenue). Then a one-sided
  test that the best variant beats the runner-up (:mod:`engine.runtime.significance`: a
  two-proportion z-test, or Welch's t for revenue); ``confidence = 1 - p``. One UPDATE gives every
  awaiting row the chosen template and label and clears the reason.

**The tie rule.** Below 95 % confidence the rest gets the *first listed* variant, the control, and
the test's status says ``tie``. A variant that has not beaten the control at 95 % is, as far as the
data can tell, no better; sending it anyway would pick whichever arm noise favoured (with two equal
variants, half of all tests would "find" a winner), and the winner's observed edge is biased
upwards exactly when it is small. The control is the message the marketer wrote first and would
have sent without a test, so a tie changes nothing they did not ask for, and the figures stay on
the test for them to judge.

A decision is made once (the ``status = testing`` guard makes two daemons agree); its figures are
stored with it and never recomputed, so ``stats`` shows what the decision saw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, Table, and_, case, cast, exists, func, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from engine.clock import Clock
from engine.runtime import variants as ab
from engine.runtime.claims import AWAITING_TEST
from engine.runtime.measures import StatsKey, VariantVerdict, VerdictSource, order_within
from engine.runtime.significance import Moments, two_proportion, welch
from engine.runtime.splits import in_test_slice, send_variants, step_test
from engine.settings import Settings
from engine.store.dialect import insert_for
from engine.store.models import AbTest, Delivery, DeliveryEvent, DeliveryState, ShopOrder
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign, SendStep

log = logging.getLogger(__name__)

AB_TEST: Table = AbTest.__table__  # type: ignore[attr-defined]
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
EVENT: Table = DeliveryEvent.__table__  # type: ignore[attr-defined]
ORDER: Table = ShopOrder.__table__  # type: ignore[attr-defined]

#: The occurrence of a flow step's test: one test across every enrolment of the campaign.
EVERY_OCCURRENCE = "*"
#: The confidence a winner needs; below it the control goes to the rest (the tie rule).
REQUIRED_CONFIDENCE = 0.95
TESTING, DECIDED, TIE = "testing", "decided", "tie"


def arms_json(step: SendStep) -> list[dict[str, str]]:
    """The step's variants as ``ab_test.variants`` stores them, in the order listed (control first)."""
    return [{"label": v.label, "template": v.template} for v in send_variants(step)]


def record_test(
    conn: Connection, campaign: Campaign, step: SendStep, occurrence: str, decide_at: datetime, now: datetime
) -> None:
    """Record the step's test for this occurrence (idempotent: a re-plan keeps the first record)."""
    test = step_test(step)
    assert test is not None
    statement = (
        insert_for(conn, AB_TEST)
        .values(
            campaign_id=campaign.key,
            step_id=step.step_id,
            occurrence=occurrence,
            metric=test.by,
            share=test.share.fraction,
            variants=arms_json(step),
            decide_at=decide_at,
            status=TESTING,
            figures={},
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "step_id", "occurrence"])
    )
    conn.execute(statement)


# --- flows -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one send of a flow writes: the template, the variant label (None: not A/B, or not yet),
    when it is due, and ``awaiting_test`` while the rest waits for the decision."""

    template: str
    label: str | None
    scheduled_for: datetime
    reason: str | None = None


def flow_assignment(
    conn: Connection, campaign: Campaign, step: SendStep, contact_id: int, now: datetime
) -> Assignment:
    """The variant a flow's send gives this contact (see the module docstring)."""
    choices = send_variants(step)
    test = step_test(step)
    if test is None:
        chosen = ab.assign(contact_id, campaign.key, choices)
        return Assignment(chosen.template, chosen.label or None, now)
    record_test(conn, campaign, step, EVERY_OCCURRENCE, now + test.decide_after.delta, now)
    row = conn.execute(
        select(AB_TEST).where(
            AB_TEST.c.campaign_id == campaign.key,
            AB_TEST.c.step_id == step.step_id,
            AB_TEST.c.occurrence == EVERY_OCCURRENCE,
        )
    ).one()
    if row.status != TESTING and row.winner:
        template = next((a["template"] for a in row.variants if a["label"] == row.winner), None)
        if template is not None:
            return Assignment(template, row.winner, now)
    if in_test_slice(campaign, step, contact_id):
        chosen = ab.assign(contact_id, campaign.key, choices)
        return Assignment(chosen.template, chosen.label or None, now)
    return Assignment(choices[0].template, None, max(row.decide_at, now), AWAITING_TEST)


# --- deciding ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's figures in the test slice: messages sent, and the metric's per-message moments."""

    label: str
    template: str
    moments: Moments

    @property
    def sent(self) -> int:
        return self.moments.n

    @property
    def rate(self) -> float:
        return self.moments.mean

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "template": self.template,
            "sent": self.sent,
            "total": round(self.moments.total, 2),
            "rate": round(self.rate, 6),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What :func:`decide_due_tests` decided for one test, and how many waiting rows it released."""

    campaign_id: str
    step_id: str
    occurrence: str
    metric: str
    status: str
    winner: str
    confidence: float | None
    arms: tuple[Arm, ...]
    released: int


def decide_due_tests(
    engine: Engine, workspace: Workspace, clock: Clock, settings: Settings
) -> list[Decision]:
    """Decide every A/B test whose ``decide_at`` has come and release its waiting rows to the winner.

    Each test is decided in its own transaction, from what it recorded when it was planned (its
    variants, metric and moment) and never from the workspace as it is now: a campaign edited or
    removed mid-test still releases its waiting rows, so none waits forever. ``workspace`` is in the
    signature of every runtime step the daemon's tick calls (``advance_due``, ``pump_due_events``).
    """
    now = clock.now()
    with engine.connect() as conn:
        due = (
            conn.execute(
                select(AB_TEST.c.id)
                .where(AB_TEST.c.status == TESTING, AB_TEST.c.decide_at <= now)
                .order_by(AB_TEST.c.decide_at, AB_TEST.c.id)
            )
            .scalars()
            .all()
        )
    decisions = []
    for test_id in due:
        with engine.begin() as conn:
            decision = _decide(conn, test_id, now, settings.conversion_window_days)
        if decision is not None:
            decisions.append(decision)
            log.info(
                "A/B test %s/%s (%s): %s %s on %s, %s; %d waiting messages released",
                decision.campaign_id,
                decision.step_id,
                decision.occurrence,
                decision.status,
                decision.winner,
                decision.metric,
                "no figures" if decision.confidence is None else f"{decision.confidence:.1%} confidence",
                decision.released,
            )
    return decisions


def _scope(row: Any) -> list[ColumnElement[bool]]:
    scope = [DELIVERY.c.campaign_id == row.campaign_id, DELIVERY.c.step_id == row.step_id]
    if row.occurrence != EVERY_OCCURRENCE:
        scope.append(DELIVERY.c.occurrence == row.occurrence)
    return scope


def _decide(conn: Connection, test_id: int, now: datetime, window_days: int) -> Decision | None:
    row = conn.execute(select(AB_TEST).where(AB_TEST.c.id == test_id, AB_TEST.c.status == TESTING)).first()
    if row is None:
        return None  # another daemon decided it first
    listed: list[dict[str, str]] = list(row.variants)
    arms, currency = _measure(conn, row, listed, now, window_days)
    ranked = sorted(arms, key=lambda arm: -arm.rate)  # stable: equal rates keep the listed order
    best, runner_up = ranked[0], ranked[1]
    if row.metric == "revenue":
        p_value = welch(best.moments, runner_up.moments)
    else:
        p_value = two_proportion(
            round(best.moments.total), best.sent, round(runner_up.moments.total), runner_up.sent
        )
    confidence = None if p_value is None else 1.0 - p_value
    control = listed[0]
    if confidence is not None and confidence >= REQUIRED_CONFIDENCE:
        status, winner, template = DECIDED, best.label, best.template
    else:
        status, winner, template = TIE, control["label"], control["template"]
    figures: dict[str, Any] = {
        "arms": [arm.as_dict() for arm in arms],
        "best": best.label,
        "runner_up": runner_up.label,
        "p_value": p_value,
        "test": "welch_t" if row.metric == "revenue" else "two_proportion_z",
        "measured_at": now.isoformat(),
        "conversion_window_days": window_days,
    }
    if currency is not None:
        figures["currency"] = currency
    marked = conn.execute(
        update(AB_TEST)
        .where(AB_TEST.c.id == test_id, AB_TEST.c.status == TESTING)
        .values(status=status, winner=winner, confidence=confidence, figures=figures, decided_at=now)
    )
    if not marked.rowcount:
        return None
    released = conn.execute(
        update(DELIVERY)
        .where(
            *_scope(row),
            DELIVERY.c.state == DeliveryState.pending.value,
            DELIVERY.c.reason == AWAITING_TEST,
        )
        .values(template=template, variant=winner, reason=None, updated_at=now)
    )
    return Decision(
        row.campaign_id,
        row.step_id,
        row.occurrence,
        row.metric,
        status,
        winner,
        confidence,
        tuple(arms),
        int(released.rowcount or 0),
    )


def _measure(
    conn: Connection, row: Any, listed: Sequence[dict[str, str]], now: datetime, window_days: int
) -> tuple[list[Arm], str | None]:
    """Per listed variant: the test slice's messages sent by ``now`` and the metric per message."""
    sent = and_(
        *_scope(row),
        DELIVERY.c.variant.in_([arm["label"] for arm in listed]),
        DELIVERY.c.state == DeliveryState.sent.value,
        DELIVERY.c.sent_at <= now,
        DELIVERY.c.contact_id.is_not(None),
    )
    converting = and_(
        order_within(ORDER, DELIVERY.c.contact_id, DELIVERY.c.sent_at, window_days), ORDER.c.placed_at <= now
    )
    currency: str | None = None
    if row.metric == "clicks":
        clicked = exists().where(
            EVENT.c.delivery_id == DELIVERY.c.id, EVENT.c.type == "click", EVENT.c.occurred_at <= now
        )
        value: ColumnElement[Any] = case((clicked, 1.0), else_=0.0)
    elif row.metric == "conversions":
        value = case((exists().where(converting), 1.0), else_=0.0)
    else:
        currency = conn.execute(
            select(ORDER.c.currency)
            .select_from(DELIVERY.join(ORDER, converting))
            .where(sent)
            .group_by(ORDER.c.currency)
            .order_by(func.sum(ORDER.c.total).desc(), ORDER.c.currency)
            .limit(1)
        ).scalar()
        revenue = (
            select(func.coalesce(func.sum(ORDER.c.total), 0))
            .where(converting, ORDER.c.currency == literal(currency or "", String()))
            .scalar_subquery()
        )
        value = cast(revenue, Float)
    per_message = (
        select(DELIVERY.c.variant.label("arm"), value.label("v")).where(sent).subquery("per_message")
    )
    totals = {
        arm: Moments(int(n), float(total or 0), float(squares or 0))
        for arm, n, total, squares in conn.execute(
            select(
                per_message.c.arm,
                func.count(),
                func.sum(per_message.c.v),
                func.sum(per_message.c.v * per_message.c.v),
            ).group_by(per_message.c.arm)
        )
    }
    arms = [Arm(a["label"], a["template"], totals.get(a["label"], Moments(0, 0.0, 0.0))) for a in listed]
    return arms, currency


# --- what stats, plan, simulate and the preview show -------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestRecord:
    """One ``ab_test`` row as the reports read it."""

    campaign_id: str
    step_id: str
    occurrence: str
    metric: str
    share: float
    variants: tuple[str, ...]
    decide_at: datetime
    status: str
    winner: str | None
    confidence: float | None
    figures: dict[str, Any]
    decided_at: datetime | None

    @property
    def verdict(self) -> VariantVerdict:
        return VariantVerdict(self.metric, self.status, self.winner, self.confidence, self.decided_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "step": self.step_id,
            "occurrence": self.occurrence,
            "metric": self.metric,
            "share": self.share,
            "variants": list(self.variants),
            "decide_at": self.decide_at.isoformat(),
            **self.verdict.as_dict(),
            "verdict": self.verdict.text(),
            "figures": self.figures,
        }


def load_tests(conn: Connection, campaign_id: str | None = None) -> list[TestRecord]:
    """Every recorded test (of one campaign), latest decision time first within a step."""
    query = select(AB_TEST).order_by(
        AB_TEST.c.campaign_id, AB_TEST.c.step_id, AB_TEST.c.decide_at.desc(), AB_TEST.c.id.desc()
    )
    if campaign_id is not None:
        query = query.where(AB_TEST.c.campaign_id == campaign_id)
    return [
        TestRecord(
            row.campaign_id,
            row.step_id,
            row.occurrence,
            row.metric,
            float(row.share),
            tuple(str(arm["label"]) for arm in row.variants),
            row.decide_at,
            row.status,
            row.winner,
            row.confidence,
            dict(row.figures or {}),
            row.decided_at,
        )
        for row in conn.execute(query)
    ]


def latest_tests(conn: Connection, campaign_id: str | None = None) -> dict[tuple[str, str], TestRecord]:
    """The latest test of each (campaign, step): what a step's verdict shows."""
    latest: dict[tuple[str, str], TestRecord] = {}
    for record in load_tests(conn, campaign_id):
        latest.setdefault((record.campaign_id, record.step_id), record)
    return latest


def verdict_source(engine: Engine) -> VerdictSource:
    """The :data:`~engine.feedback.stats.VerdictSource` ``tidings stats`` passes: each step's latest test."""
    with engine.connect() as conn:
        latest = latest_tests(conn)

    def verdict(key: StatsKey) -> VariantVerdict | None:
        record = latest.get((key.campaign, key.step or ""))
        return record.verdict if record is not None else None

    return verdict


def describe_test(step: SendStep) -> str | None:
    """``A/B test: 20% first, the winner by clicks after 4h`` (None for a step without a test)."""
    test = step_test(step)
    if test is None:
        return None
    return f"A/B test: {test.share} first, the winner by {test.by} after {test.decide_after}"


def decide_after(step: SendStep) -> timedelta:
    test = step_test(step)
    assert test is not None
    return test.decide_after.delta


__all__ = [
    "AWAITING_TEST",
    "EVERY_OCCURRENCE",
    "REQUIRED_CONFIDENCE",
    "Arm",
    "Assignment",
    "Decision",
    "TestRecord",
    "decide_after",
    "decide_due_tests",
    "describe_test",
    "flow_assignment",
    "latest_tests",
    "load_tests",
    "record_test",
    "verdict_source",
]
