"""Simulated recipients: clicks and orders drawn for what a simulated season sends.

After each dispatch, :meth:`EngagementModel.after_dispatch` looks at the emails sent since the
last call and, for each, draws from :class:`~engine.demo.engagement.EngagementRates`:

* a **click** with the template's click probability — a ``delivery_event`` of type ``click`` at the
  send time plus an exponential delay (what SendGrid's webhook would have stored), so stats, A/B
  decisions and audience filters read it like a real one;
* after a click, an **order** with ``order_per_click`` — a ``shop_order`` row (status ``placed``,
  one or two products of the demo catalogue in the contact's usual currency) some hours later.

Draws are seeded per message (the simulation's seed and the row's idempotency key), so a season
gives the same clicks and orders whatever order the dispatcher sent in, and a re-run is identical.
An event or order dated after the simulated clock's present is written at once, dated in the
future: every reader counts only what happened by its own ``now`` (the A/B decision does).

The orders do not enter the shop's event stream: a simulated ``order.placed`` would end flows by
their goal and enrol contacts in order-triggered campaigns, changing the very season being
measured; stats, A/B tests and holdout lifts read ``shop_order`` directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from engine.demo.catalog import PRODUCTS, RATES
from engine.demo.engagement import EngagementRates
from engine.store.models import Contact, Delivery, DeliveryEvent, DeliveryState, ShopOrder

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
EVENT: Table = DeliveryEvent.__table__  # type: ignore[attr-defined]
ORDER: Table = ShopOrder.__table__  # type: ignore[attr-defined]
CONTACT: Table = Contact.__table__  # type: ignore[attr-defined]
CENT = Decimal("0.01")


@dataclass
class EngagementStats:
    messages: int = 0
    clicks: int = 0
    orders: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "clicks": self.clicks, "orders": self.orders}


class EngagementModel:
    """Draws clicks and orders for emails sent during a simulation (see the module docstring)."""

    def __init__(self, engine: Engine, rates: EngagementRates, *, seed: int, since: datetime) -> None:
        self.engine = engine
        self.rates = rates
        self.seed = seed
        self.since = since
        self.stats = EngagementStats()

    def after_dispatch(self, now: datetime) -> EngagementStats:
        """Draw for every email sent in ``(since, now]``; returns what this call added."""
        added = EngagementStats()
        if now <= self.since:
            return added
        with self.engine.begin() as conn:
            sent = conn.execute(
                select(
                    DELIVERY.c.id,
                    DELIVERY.c.idempotency_key,
                    DELIVERY.c.contact_id,
                    DELIVERY.c.template,
                    DELIVERY.c.sent_at,
                    CONTACT.c.email,
                )
                .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
                .where(
                    DELIVERY.c.state == DeliveryState.sent.value,
                    DELIVERY.c.channel == "email",
                    DELIVERY.c.sent_at > self.since,
                    DELIVERY.c.sent_at <= now,
                )
                .order_by(DELIVERY.c.id)
            ).all()
            currencies = self._currencies(conn, {row.contact_id for row in sent})
            events: list[dict[str, Any]] = []
            orders: list[dict[str, Any]] = []
            for row in sent:
                added.messages += 1
                draw = random.Random(f"{self.seed}:{row.idempotency_key}")
                if draw.random() >= self.rates.click_probability(row.template):
                    continue
                clicked_at = row.sent_at + self._delay(
                    draw, self.rates.click_delay_minutes * 60, self.rates.click_delay_max_hours * 3600
                )
                events.append(
                    {
                        "provider_event_id": f"simulated-click-{row.id}",
                        "delivery_id": row.id,
                        "contact_id": row.contact_id,
                        "email": row.email,
                        "type": "click",
                        "occurred_at": clicked_at,
                        "payload": {"simulated": True},
                    }
                )
                if draw.random() < self.rates.order_per_click:
                    placed_at = clicked_at + self._delay(
                        draw, self.rates.order_delay_hours * 3600, self.rates.order_delay_max_hours * 3600
                    )
                    orders.append(self._order(draw, row, currencies.get(row.contact_id, "EUR"), placed_at))
            if events:
                conn.execute(EVENT.insert(), events)
            if orders:
                conn.execute(ORDER.insert(), orders)
        added.clicks, added.orders = len(events), len(orders)
        self.since = now
        self.stats.messages += added.messages
        self.stats.clicks += added.clicks
        self.stats.orders += added.orders
        return added

    @staticmethod
    def _delay(draw: random.Random, mean_seconds: float, max_seconds: float) -> timedelta:
        return timedelta(seconds=min(draw.expovariate(1.0 / mean_seconds), max_seconds))

    def _order(self, draw: random.Random, row: Any, currency: str, placed_at: datetime) -> dict[str, Any]:
        rate = RATES.get(currency, Decimal("1"))
        products = draw.sample(PRODUCTS, draw.randint(1, self.rates.max_items))
        items = [
            {
                "sku": p.sku,
                "name": p.name,
                "category": p.category,
                "quantity": 1,
                "unit_price": str((p.price_eur * rate).quantize(CENT)),
            }
            for p in products
        ]
        total = sum(((p.price_eur * rate).quantize(CENT) for p in products), Decimal("0"))
        return {
            "external_id": f"simulated-{self.seed}-{row.id}",
            "contact_id": row.contact_id,
            "status": "placed",
            "placed_at": placed_at,
            "total": total,
            "currency": currency,
            "is_gift": False,
            "items": items,
        }

    @staticmethod
    def _currencies(conn: Any, contact_ids: set[int]) -> dict[int, str]:
        """Each contact's usual currency: that of their latest order (EUR without one)."""
        if not contact_ids:
            return {}
        latest = (
            select(ORDER.c.contact_id, func.max(ORDER.c.placed_at).label("placed_at"))
            .where(ORDER.c.contact_id.in_(sorted(contact_ids)))
            .group_by(ORDER.c.contact_id)
            .subquery()
        )
        rows = conn.execute(
            select(ORDER.c.contact_id, ORDER.c.currency).join(
                latest,
                (latest.c.contact_id == ORDER.c.contact_id) & (latest.c.placed_at == ORDER.c.placed_at),
            )
        )
        return {contact_id: currency for contact_id, currency in rows}


__all__ = ["EngagementModel", "EngagementStats"]
