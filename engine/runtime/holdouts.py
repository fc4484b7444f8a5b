"""What a campaign added against its holdout: conversion and revenue lift with 95 % intervals.

A campaign's ``holdout: 5%`` keeps a stable share of its audience unsent (:mod:`engine.runtime.splits`):
``skipped`` outbox rows with reason ``holdout`` (one send step), or enrolments ended
``exited``/``holdout`` (flows and event enrolments). :func:`campaign_lifts` compares

* **treated** units — sent outbox rows (one send step), or enrolments with at least one sent
  message (flows) — with
* **holdout** units — the held-out rows or enrolments,

each from its own reference moment — a row's ``scheduled_for``, an enrolment's ``created_at`` —
over the conversion window after it (``TIDINGS_CONVERSION_WINDOW_DAYS``; an order counts as
:func:`engine.feedback.stats.order_within` says, the one definition ``stats`` uses too). Both sides
are measured from when they would have been sent, not from a click, since the holdout has no clicks.

Figures: conversion rate (units with at least one order), and revenue per recipient per currency
(order totals within the window over every unit, zeros included). The relative lift is
``treated / holdout - 1``; its 95 % interval is computed on the log of the ratio and exponentiated
(:mod:`engine.runtime.significance`: Katz's interval for the rate, the delta method for revenue),
so it is asymmetric and never below -100 %. A group without a conversion, or a currency in which
the holdout spent nothing, has no lift yet (a ratio with a zero in it is zero or infinite): it is
left out rather than shown as a number the data cannot support.

The comparison is intent-to-treat on the treated side only in part: treated counts what was
*sent*, so contacts the policy gate skipped (a cap, quiet hours with skip) are in neither group.
Those are refusals of the whole audience at random with respect to the holdout hash, so they
shrink both groups alike rather than bias one.
"""

from __future__ import annotations

from sqlalchemy import Float, Table, and_, case, cast, exists, func, literal, select, union_all
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Subquery

from engine.runtime.measures import HoldoutLift, LiftSource, order_within
from engine.runtime.significance import Moments, mean_ratio, proportion_ratio
from engine.runtime.splits import HOLDOUT
from engine.store.models import Delivery, DeliveryState, Enrolment, ShopOrder

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
ORDER: Table = ShopOrder.__table__  # type: ignore[attr-defined]
CONFIDENCE = 0.95
TREATED = "treated"


def _units(campaign_id: str) -> Subquery:
    """(kind, uid, group, contact_id, moment) for every treated and held-out unit of the campaign."""
    d, e = DELIVERY, ENROLMENT
    sent_by_enrolment = (
        exists().where(d.c.enrolment_id == e.c.id, d.c.state == DeliveryState.sent.value).correlate(e)
    )
    return union_all(
        select(
            literal("delivery").label("kind"),
            d.c.id.label("uid"),
            case((d.c.state == DeliveryState.sent.value, literal(TREATED)), else_=literal(HOLDOUT)).label(
                "grp"
            ),
            d.c.contact_id,
            d.c.scheduled_for.label("moment"),
        ).where(
            d.c.campaign_id == campaign_id,
            d.c.enrolment_id.is_(None),
            d.c.contact_id.is_not(None),
            (d.c.state == DeliveryState.sent.value)
            | and_(d.c.state == DeliveryState.skipped.value, d.c.reason == HOLDOUT),
        ),
        select(
            literal("enrolment").label("kind"),
            e.c.id.label("uid"),
            case((e.c.end_reason == HOLDOUT, literal(HOLDOUT)), else_=literal(TREATED)).label("grp"),
            e.c.contact_id,
            e.c.created_at.label("moment"),
        ).where(e.c.campaign_id == campaign_id, (e.c.end_reason == HOLDOUT) | sent_by_enrolment),
    ).subquery("units")


def campaign_lifts(conn: Connection, campaign_id: str, window_days: int) -> list[HoldoutLift]:
    """The campaign's lifts (conversion rate first, then revenue per recipient per currency)."""
    units = _units(campaign_id)
    converts = order_within(ORDER, units.c.contact_id, units.c.moment, window_days)
    counts = {
        group: (int(n), int(x or 0))
        for group, n, x in conn.execute(
            select(
                units.c.grp,
                func.count(),
                func.sum(case((exists().where(converts), 1), else_=0)),
            ).group_by(units.c.grp)
        )
    }
    n_t, x_t = counts.get(TREATED, (0, 0))
    n_h, x_h = counts.get(HOLDOUT, (0, 0))
    if not n_t or not n_h:
        return []
    lifts: list[HoldoutLift] = []
    rate = proportion_ratio(x_t, n_t, x_h, n_h, CONFIDENCE)
    if rate is not None:
        lifts.append(
            HoldoutLift(
                "conversion_rate", x_t / n_t, x_h / n_h, rate.lift, rate.low, rate.high, CONFIDENCE, n_h, n_t
            )
        )
    per_unit = (
        select(
            units.c.grp.label("grp"),
            units.c.kind.label("kind"),
            units.c.uid.label("uid"),
            ORDER.c.currency.label("currency"),
            cast(func.sum(ORDER.c.total), Float).label("revenue"),
        )
        .select_from(units.join(ORDER, converts))
        .group_by(units.c.grp, units.c.kind, units.c.uid, ORDER.c.currency)
        .subquery("per_unit")
    )
    sums: dict[str, dict[str, Moments]] = {}
    for group, currency, total, squares in conn.execute(
        select(
            per_unit.c.grp,
            per_unit.c.currency,
            func.sum(per_unit.c.revenue),
            func.sum(per_unit.c.revenue * per_unit.c.revenue),
        ).group_by(per_unit.c.grp, per_unit.c.currency)
    ):
        size = n_t if group == TREATED else n_h
        sums.setdefault(currency, {})[group] = Moments(size, float(total or 0), float(squares or 0))
    for currency, groups in sorted(sums.items()):
        treated = groups.get(TREATED, Moments(n_t, 0.0, 0.0))
        held = groups.get(HOLDOUT, Moments(n_h, 0.0, 0.0))
        ratio = mean_ratio(treated, held, CONFIDENCE)
        if ratio is None:
            continue
        lifts.append(
            HoldoutLift(
                "revenue_per_recipient",
                round(treated.mean, 4),
                round(held.mean, 4),
                ratio.lift,
                ratio.low,
                ratio.high,
                CONFIDENCE,
                n_h,
                n_t,
                currency,
            )
        )
    return lifts


def holdout_campaigns(conn: Connection) -> set[str]:
    """Campaigns with at least one held-out row or enrolment."""
    found = set(
        conn.execute(
            select(DELIVERY.c.campaign_id)
            .where(DELIVERY.c.state == DeliveryState.skipped.value, DELIVERY.c.reason == HOLDOUT)
            .distinct()
        ).scalars()
    )
    found.update(
        conn.execute(
            select(ENROLMENT.c.campaign_id).where(ENROLMENT.c.end_reason == HOLDOUT).distinct()
        ).scalars()
    )
    return found


def lift_source(engine: Engine, window_days: int) -> LiftSource:
    """The :data:`~engine.feedback.stats.LiftSource` ``tidings stats`` passes (one query set per
    campaign that has a holdout; none for the others)."""
    with engine.connect() as conn:
        held = holdout_campaigns(conn)

    def lifts(campaign_id: str) -> list[HoldoutLift]:
        if campaign_id not in held:
            return []
        with engine.connect() as conn:
            return campaign_lifts(conn, campaign_id, window_days)

    return lifts


__all__ = ["campaign_lifts", "holdout_campaigns", "lift_source"]
