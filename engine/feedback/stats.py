"""Campaign statistics per campaign, step and A/B variant, computed by SQL aggregates.

Figures, per (campaign, step, variant):

* ``planned`` — outbox rows; ``sent``, ``failed``, ``pending`` (pending, claimed or retry)
  and ``skipped`` by state, with ``skipped_by_reason`` from ``delivery.reason``;
* ``delivered``, ``opened``, ``clicked``, ``bounced`` (hard), ``complained`` (spam reports),
  ``unsubscribed`` — *distinct messages* with at least one such ``delivery_event``
  (a message opened five times counts once); ``opened`` counts people's opens only;
  ``machine_opened`` counts messages fetched by a machine (Apple Mail Privacy Protection
  loads every message on arrival, ``sg_machine_open``), apart so it never inflates ``opened``;
* ``conversions`` and ``revenue`` — distinct orders of the recipient placed within
  ``conversion_window_days`` after the send or after a click on it. An order counts for
  every message that touched it in its window (multi-touch), so the conversions of two
  campaigns can overlap; within one row each order counts once. Revenue is per currency.

Nothing here loops over rows in Python: four grouped queries, whatever the outbox size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, func, literal, select, union_all
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from engine.store.models import Delivery, DeliveryEvent, DeliveryState, ShopOrder
from engine.store.types import UTCDateTime

EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "opened": ("open",),  # never "machine_open": a prefetch by Apple Mail Privacy Protection
    "machine_opened": ("machine_open",),
    "clicked": ("click",),
    "bounced": ("bounce",),
    "complained": ("spamreport",),
    "unsubscribed": ("unsubscribe", "group_unsubscribe"),
}


class plus_days(FunctionElement[Any]):
    """``moment + N days`` in the database's own date arithmetic."""

    type = UTCDateTime()
    inherit_cache = True
    name = "plus_days"


@compiles(plus_days, "postgresql")
def _plus_days_pg(element: plus_days, compiler: Any, **kw: Any) -> str:
    moment, days = list(element.clauses)
    return f"({compiler.process(moment, **kw)} + make_interval(days => {compiler.process(days, **kw)}))"


@compiles(plus_days)
def _plus_days_sqlite(element: plus_days, compiler: Any, **kw: Any) -> str:
    moment, days = list(element.clauses)
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC; keep that shape so string comparison stays correct.
    shifted = f"datetime({compiler.process(moment, **kw)}, '+' || {compiler.process(days, **kw)} || ' days')"
    return f"(substr({shifted}, 1, 19) || '.999999')"


@dataclass
class StepStats:
    campaign: str
    step: str
    variant: str | None
    planned: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    opened: int = 0
    machine_opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    conversions: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["revenue"] = {currency: str(amount) for currency, amount in self.revenue.items()}
        return data


def _t(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def campaign_stats(engine: Engine, *, window_days: int, campaign_id: str | None = None) -> list[StepStats]:
    """Statistics for every campaign (or one), ordered by campaign, step, variant."""
    d, e, o = _t(Delivery), _t(DeliveryEvent), _t(ShopOrder)
    keys = (d.c.campaign_id, d.c.step_id, d.c.variant)
    scope = [d.c.campaign_id == campaign_id] if campaign_id else []
    in_flight = (DeliveryState.pending.value, DeliveryState.claimed.value, DeliveryState.retry.value)
    states = (
        select(
            *keys,
            func.count().label("planned"),
            _count_if(d.c.state == DeliveryState.sent.value).label("sent"),
            _count_if(d.c.state == DeliveryState.failed.value).label("failed"),
            _count_if(d.c.state.in_(in_flight)).label("pending"),
            _count_if(d.c.state == DeliveryState.skipped.value).label("skipped"),
        )
        .where(*scope)
        .group_by(*keys)
    )
    reasons = (
        select(*keys, d.c.reason, func.count().label("n"))
        .where(d.c.state == DeliveryState.skipped.value, *scope)
        .group_by(*keys, d.c.reason)
    )
    feedback = (
        select(
            *keys,
            *[
                func.count(func.distinct(case((e.c.type.in_(types), d.c.id)))).label(name)
                for name, types in EVENT_COLUMNS.items()
            ],
        )
        .select_from(d.join(e, e.c.delivery_id == d.c.id))
        .where(*scope)
        .group_by(*keys)
    )
    touches = union_all(
        select(*keys, d.c.contact_id, d.c.sent_at.label("touched_at")).where(
            d.c.state == DeliveryState.sent.value,
            d.c.sent_at.is_not(None),
            d.c.contact_id.is_not(None),
            *scope,
        ),
        select(*keys, d.c.contact_id, e.c.occurred_at.label("touched_at"))
        .select_from(d.join(e, e.c.delivery_id == d.c.id))
        .where(e.c.type == "click", d.c.contact_id.is_not(None), *scope),
    ).subquery("touches")
    attributed = (
        select(touches.c.campaign_id, touches.c.step_id, touches.c.variant, o.c.id, o.c.total, o.c.currency)
        .distinct()
        .select_from(
            touches.join(
                o,
                and_(
                    o.c.contact_id == touches.c.contact_id,
                    o.c.placed_at > touches.c.touched_at,
                    o.c.placed_at <= plus_days(touches.c.touched_at, literal(int(window_days))),
                ),
            )
        )
        .where(o.c.status != "cancelled")
        .subquery("attributed")
    )
    conversions = select(
        attributed.c.campaign_id,
        attributed.c.step_id,
        attributed.c.variant,
        attributed.c.currency,
        func.count().label("n"),
        func.sum(attributed.c.total).label("revenue"),
    ).group_by(attributed.c.campaign_id, attributed.c.step_id, attributed.c.variant, attributed.c.currency)

    table: dict[tuple[str, str, str | None], StepStats] = {}
    with engine.connect() as conn:
        for row in conn.execute(states):
            key = (row.campaign_id, row.step_id, row.variant)
            table[key] = StepStats(
                *key,
                planned=int(row.planned),
                sent=int(row.sent),
                failed=int(row.failed),
                pending=int(row.pending),
                skipped=int(row.skipped),
            )
        for row in conn.execute(reasons):
            table[(row.campaign_id, row.step_id, row.variant)].skipped_by_reason[row.reason or "unknown"] = (
                int(row.n)
            )
        for row in conn.execute(feedback):
            stats = table[(row.campaign_id, row.step_id, row.variant)]
            for name in EVENT_COLUMNS:
                setattr(stats, name, int(getattr(row, name)))
        for row in conn.execute(conversions):
            stats = table[(row.campaign_id, row.step_id, row.variant)]
            stats.conversions += int(row.n)
            stats.revenue[row.currency] = Decimal(row.revenue or 0).quantize(Decimal("0.01"))
    return [table[key] for key in sorted(table, key=lambda k: (k[0], k[1], k[2] or ""))]
