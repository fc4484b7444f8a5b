"""What the runtime measures and reports read: A/B verdicts, holdout lifts, and the one definition
of a conversion.

The runtime decides a test's winner (:mod:`engine.runtime.ab_tests`) and measures a holdout's lift
(:mod:`engine.runtime.holdouts`); ``tidings stats`` (:mod:`engine.feedback.stats`) shows them on its
rows through the two callables :data:`VerdictSource` and :data:`LiftSource`. The types live here,
in the runtime's layer, so the reports import the runtime and never the other way round; and
:func:`order_within` is here because the A/B verdicts, the lifts and the stats' conversions must
all join orders on the same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from engine.store.types import UTCDateTime


@dataclass(frozen=True, slots=True)
class StatsKey:
    """What a row is about: a campaign, and down to a step, a variant and a recipient language."""

    campaign: str
    step: str | None = None
    variant: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class VariantVerdict:
    """The outcome of a send step's A/B test (``test: {by: …}``), as the runtime decided it."""

    metric: str  # clicks | conversions | revenue
    status: str  # testing | decided | tie
    winner: str | None = None  # the variant label, once decided
    confidence: float | None = None  # 0..1: how sure the runtime is that the winner is better
    decided_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "status": self.status,
            "winner": self.winner,
            "confidence": self.confidence,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }

    def text(self) -> str:
        if self.status == "decided" and self.winner:
            sure = f" ({self.confidence:.0%} sure)" if self.confidence is not None else ""
            return f"{self.winner} wins on {self.metric}{sure}"
        sure = f", {self.confidence:.0%} sure" if self.confidence is not None else ""
        if self.status == "tie" and self.winner:
            return f"tie on {self.metric}{sure}: the control {self.winner} goes to the rest"
        return f"{self.status} on {self.metric}"


@dataclass(frozen=True, slots=True)
class HoldoutLift:
    """What a campaign added against its holdout (``holdout: 5%``), as the runtime measured it."""

    metric: str  # conversion_rate | revenue_per_recipient
    treated: float
    holdout: float
    lift: float  # relative: (treated - holdout) / holdout
    low: float  # the lift's confidence interval
    high: float
    confidence: float  # e.g. 0.95
    holdout_contacts: int
    treated_contacts: int = 0
    currency: str | None = None  # revenue per recipient is per currency

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "currency": self.currency,
            "treated": self.treated,
            "holdout": self.holdout,
            "lift": self.lift,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "holdout_contacts": self.holdout_contacts,
            "treated_contacts": self.treated_contacts,
        }

    def text(self) -> str:
        what = self.metric.replace("_", " ") + (f" ({self.currency})" if self.currency else "")
        interval = f"{self.confidence:.0%} CI {self.low:+.1%}…{self.high:+.1%}"
        return f"{self.lift:+.1%} {what} ({interval}, holdout {self.holdout_contacts:,})"


#: The runtime's A/B verdict for a step row's key (campaign and step set), or None.
VerdictSource = Callable[[StatsKey], VariantVerdict | None]
#: The runtime's holdout lifts for a campaign id (conversion rate first, then revenue per
#: recipient per currency); empty without a holdout.
LiftSource = Callable[[str], list[HoldoutLift]]


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


def order_within(
    orders: Any, contact_id: ColumnElement[Any], moment: ColumnElement[Any], window_days: int
) -> ColumnElement[bool]:
    """An order of ``contact_id`` that converts a touch at ``moment``: placed after it and within
    ``window_days`` (``TIDINGS_CONVERSION_WINDOW_DAYS``), not cancelled. The one definition of a
    conversion: stats, A/B verdicts by conversions or revenue and holdout lifts all join on it."""
    return and_(
        orders.c.contact_id == contact_id,
        orders.c.placed_at > moment,
        orders.c.placed_at <= plus_days(moment, literal(int(window_days))),
        orders.c.status != "cancelled",
    )


__all__ = [
    "HoldoutLift",
    "LiftSource",
    "StatsKey",
    "VariantVerdict",
    "VerdictSource",
    "order_within",
    "plus_days",
]
