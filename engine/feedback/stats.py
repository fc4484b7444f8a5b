"""Campaign results per campaign, step, A/B variant and locale, computed by SQL aggregates.

Figures, per row (a row is one campaign, one step of it, one variant of a step, or one
recipient language of a step or variant — :class:`Level`):

* ``planned`` — outbox rows, which split exactly into ``pending`` (pending, claimed or
  retry: not sent *yet*), ``sent``, ``failed`` and ``skipped`` (with ``skipped_by_reason``
  from ``delivery.reason``: no consent, frequency cap, cancelled…). So 1,617 planned and
  1,214 sent is never unexplained.
* ``delivered``, ``bounced`` (hard), ``opened``, ``clicked``, ``complained`` (spam reports),
  ``unsubscribed`` — *distinct messages* with at least one such ``delivery_event`` (a message
  opened five times counts once). ``opened`` counts human opens only: SendGrid's machine
  opens (Apple Mail Privacy Protection prefetching, recorded as ``machine_open``) are not
  opens, so they are never counted here; they are counted apart, as ``machine_opened``.
* ``conversions`` and ``revenue`` — distinct orders of the recipient placed within
  ``window_days`` after the send or after a click on it. An order counts for every message
  that touched it in its window (multi-touch), so the conversions of two campaigns can
  overlap; within one row each order counts once (which is why every level is its own
  query rather than a sum of the rows below it). Revenue is per currency.

Rates (:class:`Rates`) are of the messages that reached an inbox, ``sent - bounced``, as
Mailchimp and Klaviyo count them: an SMTP or file channel reports no delivery events, so a
rate over ``delivered`` would read 0% there; the delivery rate itself is shown only once the
provider reported any delivery or bounce.

The A/B verdict of a send step and the holdout lift of a campaign are decided by the runtime;
:func:`campaign_stats` takes them as two callables (:data:`VerdictSource`,
:data:`LiftSource`) and puts them on the step and campaign rows, so ``stats``, its JSON and
its CSV carry them without a second report.

Nothing loops over outbox rows in Python: four grouped queries per level, whatever the size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, Table, case, func, literal, select, union_all
from sqlalchemy.engine import Engine

from engine.runtime.exits import exit_counts
from engine.runtime.measures import (
    HoldoutLift,
    LiftSource,
    StatsKey,
    VariantVerdict,
    VerdictSource,
    order_within,
)
from engine.store.models import Delivery, DeliveryEvent, DeliveryState, ShopOrder

#: Figure name → ``delivery_event.type`` values that count for it (``machine_open`` never as an open).
EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "opened": ("open",),  # never "machine_open": a prefetch by Apple Mail Privacy Protection
    "machine_opened": ("machine_open",),
    "clicked": ("click",),
    "bounced": ("bounce",),
    "complained": ("spamreport",),
    "unsubscribed": ("unsubscribe", "group_unsubscribe"),
}
IN_FLIGHT = (DeliveryState.pending.value, DeliveryState.claimed.value, DeliveryState.retry.value)


class Level(StrEnum):
    """How fine a row is; each level adds one key to the one before."""

    campaign = "campaign"
    step = "step"
    variant = "variant"
    locale = "locale"

    @property
    def depth(self) -> int:
        return list(Level).index(self)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


@dataclass(frozen=True, slots=True)
class Rates:
    """Shares, 0..1 (None when there is nothing to divide by); see the module docstring for the bases."""

    delivery: float | None
    bounce: float | None
    open: float | None
    click: float | None
    click_to_open: float | None
    unsubscribe: float | None
    complaint: float | None
    conversion: float | None
    revenue_per_recipient: dict[str, Decimal]

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            name: (None if value is None else round(value, 6))
            for name, value in (
                ("delivery", self.delivery),
                ("bounce", self.bounce),
                ("open", self.open),
                ("click", self.click),
                ("click_to_open", self.click_to_open),
                ("unsubscribe", self.unsubscribe),
                ("complaint", self.complaint),
                ("conversion", self.conversion),
            )
        }
        data["revenue_per_recipient"] = {c: str(v) for c, v in sorted(self.revenue_per_recipient.items())}
        return data


@dataclass
class StatsRow:
    key: StatsKey
    level: Level
    planned: int = 0
    pending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)  # render_error, permanent, …
    #: Flows of the campaign that ended early for a reason worth a look (campaign rows only).
    exits: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    bounced: int = 0
    opened: int = 0
    machine_opened: int = 0
    clicked: int = 0
    complained: int = 0
    unsubscribed: int = 0
    conversions: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)
    verdict: VariantVerdict | None = None
    lifts: list[HoldoutLift] = field(default_factory=list)

    @property
    def lift(self) -> HoldoutLift | None:
        """The headline lift (conversion rate), when the campaign has a holdout."""
        return self.lifts[0] if self.lifts else None

    @property
    def reached(self) -> int:
        """Messages that reached an inbox: sent, less hard bounces."""
        return max(self.sent - self.bounced, 0)

    @property
    def rates(self) -> Rates:
        reached = self.reached
        reported = self.delivered or self.bounced
        return Rates(
            delivery=_rate(self.delivered, self.sent) if reported else None,
            bounce=_rate(self.bounced, self.sent),
            open=_rate(self.opened, reached),
            click=_rate(self.clicked, reached),
            click_to_open=_rate(self.clicked, self.opened),
            unsubscribe=_rate(self.unsubscribed, reached),
            complaint=_rate(self.complained, reached),
            conversion=_rate(self.conversions, reached),
            revenue_per_recipient={
                currency: (amount / reached).quantize(Decimal("0.01"))
                for currency, amount in self.revenue.items()
                if reached
            },
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "campaign": self.key.campaign,
            "step": self.key.step,
            "variant": self.key.variant,
            "locale": self.key.locale,
            "planned": self.planned,
            "pending": self.pending,
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
            "failed_by_reason": dict(sorted(self.failed_by_reason.items())),
            "exits": dict(sorted(self.exits.items())),
            "delivered": self.delivered,
            "bounced": self.bounced,
            "opened": self.opened,
            "machine_opened": self.machine_opened,
            "clicked": self.clicked,
            "complained": self.complained,
            "unsubscribed": self.unsubscribed,
            "conversions": self.conversions,
            "revenue": {currency: str(amount) for currency, amount in sorted(self.revenue.items())},
            "rates": self.rates.as_dict(),
            "verdict": self.verdict.as_dict() if self.verdict else None,
            "lift": self.lift.as_dict() if self.lift else None,
            "lifts": [lift.as_dict() for lift in self.lifts],
        }


@dataclass
class StatsReport:
    window_days: int
    rows: list[StatsRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversion_window_days": self.window_days,
            "rates_of": "sent - bounced (messages that reached an inbox); delivery and bounce: of sent",
            "rows": [row.as_dict() for row in self.rows],
        }


# --- SQL ------------------------------------------------------------------------------------------


def _t(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def language(column: ColumnElement[str | None], default: str) -> ColumnElement[str]:
    """The primary language subtag, lower-cased (``ro-RO`` → ``ro``); a missing locale is ``default``."""
    value = func.lower(func.coalesce(column, literal(default)))
    return case(
        (func.substr(value, 3, 1).in_(("-", "_")), func.substr(value, 1, 2)),
        (func.substr(value, 4, 1).in_(("-", "_")), func.substr(value, 1, 3)),
        else_=value,
    )


def _messages(campaign_id: str | None, default_locale: str) -> Subquery:
    d = _t(Delivery)
    query = select(
        d.c.id,
        d.c.campaign_id,
        d.c.step_id,
        d.c.variant,
        language(d.c.locale, default_locale).label("lang"),
        d.c.state,
        d.c.reason,
        d.c.contact_id,
        d.c.sent_at,
    )
    if campaign_id:
        query = query.where(d.c.campaign_id == campaign_id)
    return query.subquery("m")


def _keys(source: Any, level: Level) -> list[ColumnElement[Any]]:
    names = ("campaign_id", "step_id", "variant", "lang")[: level.depth + 1]
    return [source.c[name] for name in names]


def _queries(m: Subquery, level: Level, window_days: int) -> dict[str, Select[Any]]:
    e, o = _t(DeliveryEvent), _t(ShopOrder)
    keys = _keys(m, level)
    states = select(
        *keys,
        func.count().label("planned"),
        _count_if(m.c.state == DeliveryState.sent.value).label("sent"),
        _count_if(m.c.state == DeliveryState.failed.value).label("failed"),
        _count_if(m.c.state.in_(IN_FLIGHT)).label("pending"),
        _count_if(m.c.state == DeliveryState.skipped.value).label("skipped"),
    ).group_by(*keys)
    reasons = (
        select(*keys, m.c.state, m.c.reason, func.count().label("n"))
        .where(m.c.state.in_([DeliveryState.skipped.value, DeliveryState.failed.value]))
        .group_by(*keys, m.c.state, m.c.reason)
    )
    feedback = (
        select(
            *keys,
            *[
                func.count(func.distinct(case((e.c.type.in_(types), m.c.id)))).label(name)
                for name, types in EVENT_COLUMNS.items()
            ],
        )
        .select_from(m.join(e, e.c.delivery_id == m.c.id))
        .group_by(*keys)
    )
    touches = union_all(
        select(*keys, m.c.contact_id, m.c.sent_at.label("touched_at")).where(
            m.c.state == DeliveryState.sent.value, m.c.sent_at.is_not(None), m.c.contact_id.is_not(None)
        ),
        select(*keys, m.c.contact_id, e.c.occurred_at.label("touched_at"))
        .select_from(m.join(e, e.c.delivery_id == m.c.id))
        .where(e.c.type == "click", m.c.contact_id.is_not(None)),
    ).subquery("touches")
    touch_keys = _keys(touches, level)
    attributed = (
        select(*touch_keys, o.c.id, o.c.total, o.c.currency)
        .distinct()
        .select_from(
            touches.join(o, order_within(o, touches.c.contact_id, touches.c.touched_at, window_days))
        )
        .subquery("attributed")
    )
    attributed_keys = _keys(attributed, level)
    conversions = select(
        *attributed_keys,
        attributed.c.currency,
        func.count().label("n"),
        func.sum(attributed.c.total).label("revenue"),
    ).group_by(*attributed_keys, attributed.c.currency)
    return {"states": states, "reasons": reasons, "feedback": feedback, "conversions": conversions}


def _key(row: Any, level: Level) -> StatsKey:
    names = ("campaign_id", "step_id", "variant", "lang")[: level.depth + 1]
    return StatsKey(*(getattr(row, name) for name in names))


def _level_rows(conn: Any, m: Subquery, level: Level, window_days: int) -> dict[StatsKey, StatsRow]:
    queries = _queries(m, level, window_days)
    table: dict[StatsKey, StatsRow] = {}
    for row in conn.execute(queries["states"]):
        key = _key(row, level)
        table[key] = StatsRow(
            key,
            level,
            planned=int(row.planned),
            sent=int(row.sent),
            failed=int(row.failed),
            pending=int(row.pending),
            skipped=int(row.skipped),
        )
    for row in conn.execute(queries["reasons"]):
        found = table[_key(row, level)]
        by_reason = (
            found.skipped_by_reason if row.state == DeliveryState.skipped.value else found.failed_by_reason
        )
        by_reason[row.reason or "unknown"] = int(row.n)
    for row in conn.execute(queries["feedback"]):
        stats = table[_key(row, level)]
        for name in EVENT_COLUMNS:
            setattr(stats, name, int(getattr(row, name)))
    for row in conn.execute(queries["conversions"]):
        stats = table[_key(row, level)]
        stats.conversions += int(row.n)
        stats.revenue[row.currency] = Decimal(row.revenue or 0).quantize(Decimal("0.01"))
    return table


def _parts(key: StatsKey) -> tuple[str | None, ...]:
    return (key.campaign, key.step, key.variant, key.locale)


def _ordered(levels: dict[Level, dict[StatsKey, StatsRow]]) -> list[StatsRow]:
    """Campaign, then each of its steps, each followed by its variants and languages (a tree, depth first).

    A step without variants has a single variant row (``variant`` None) that says nothing the step
    row does not: it is left out, and the step's language rows follow the step itself.
    """
    children: dict[tuple[int, StatsKey], list[StatsRow]] = {}
    roots: list[StatsRow] = []
    for level, rows in levels.items():
        for key, row in rows.items():
            if level is Level.campaign:
                roots.append(row)
                continue
            parent = StatsKey(key.campaign, *_parts(key)[1 : level.depth])
            children.setdefault((level.depth - 1, parent), []).append(row)

    def sort_key(row: StatsRow) -> tuple[str, ...]:
        return tuple(part or "" for part in _parts(row.key))

    ordered: list[StatsRow] = []

    def visit(row: StatsRow) -> None:
        skip = row.level is Level.variant and row.key.variant is None
        if not skip:
            ordered.append(row)
        for child in sorted(children.get((row.level.depth, row.key), []), key=sort_key):
            visit(child)

    for root in sorted(roots, key=sort_key):
        visit(root)
    return ordered


def campaign_stats(
    engine: Engine,
    *,
    window_days: int,
    default_locale: str = "en",
    campaign_id: str | None = None,
    depth: Level = Level.locale,
    verdicts: VerdictSource | None = None,
    lifts: LiftSource | None = None,
) -> StatsReport:
    """Results of every campaign (or one), as a tree of rows down to ``depth``.

    ``verdicts`` is asked for every step row, ``lifts`` for every campaign row; both are the
    runtime's (A/B tests and holdouts) and may be left out.
    """
    m = _messages(campaign_id, default_locale)
    levels: dict[Level, dict[StatsKey, StatsRow]] = {}
    with engine.connect() as conn:
        for level in list(Level)[: depth.depth + 1]:
            levels[level] = _level_rows(conn, m, level, window_days)
        exits = exit_counts(conn, campaign_id)
    campaign_rows = levels[Level.campaign]
    for cid, kinds in exits.items():  # a flow that never got to a send still has a row: its exits
        key = StatsKey(cid)
        campaign_rows.setdefault(key, StatsRow(key, Level.campaign)).exits = dict(kinds)
    for row in levels.get(Level.step, {}).values():
        row.verdict = verdicts(row.key) if verdicts is not None else None
    for row in levels[Level.campaign].values():
        row.lifts = lifts(row.key.campaign) if lifts is not None else []
    return StatsReport(window_days, _ordered(levels))
