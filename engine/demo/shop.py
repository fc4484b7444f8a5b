"""The demo shop's rows, generated in memory from one seed (no database, no clock).

Everything is drawn from one seeded :class:`Draw` in a fixed order, so the same seed,
season and size give the same rows, byte for byte. Foreign keys are *local* indexes into
``DemoRows.contacts``; the loader swaps them for real ids when it writes.

The season follows the shop's year: older orders from January to October (so win-back
segments have someone to win back), holiday orders from November to 23 December, gift
cards bought for people who never shopped here and redeemed from Christmas Eve into
January, then returns, exchanges and the recipients' first orders in January.

The care side of the season (what a gift card's buyer says about its recipient and when it
is to arrive, return labels, shipped exchanges, claims and how they end) is drawn from a
second seeded stream, so adding it left every row the first stream draws as it was: the same
seed still gives the same customers, orders and cards.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from engine.demo.catalog import (
    CATEGORIES,
    CLAIM_RESOLUTIONS,
    EMAIL_WORDING,
    EXCHANGE_REASONS,
    GIFT_CARD_AMOUNTS_EUR,
    GIFT_MESSAGES,
    MARKETS,
    PROBLEMS,
    PRODUCTS,
    RATES,
    RETURN_REASONS,
    X_WORDING,
    Market,
    Product,
)
from engine.demo.draw import Draw
from engine.demo.people import AddressBook, NamePool, build_name_pools

CENT = Decimal("0.01")
RECIPIENT_SHARE = 0.06  # of all contacts: gift-card recipients, new to the shop
LEAD_SHARE = 0.08  # of customers: signed up, never ordered
EMAIL_CONSENT = 0.76  # of customers (recipients consent less often: ~35 %)
WITHDRAWN = 0.07
X_HANDLE_SHARE = 0.18
SHOP_URL = "https://shop.example.com"
CARE_STREAM = 7_919  # the care draws' seed is derived from the shop's seed with it


def ids_for(seed: int) -> dict[str, str]:
    """External-id prefixes of one seed's demo shop, so two seeds can share a store (``--append``)."""
    return {
        "contact": f"NB-C{seed}-",
        "order": f"NB-{seed}-",
        "gift_card": f"GC-{seed}-",
        "event": f"ev-{seed}-",
        "claim": f"CL-{seed}-",
    }


@dataclass
class DemoRows:
    """Rows per table, as dicts of column values; ``contact_id``-like fields hold local indexes."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)
    suppressions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    gift_cards: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(
            len(rows)
            for rows in (
                self.contacts,
                self.consents,
                self.suppressions,
                self.orders,
                self.gift_cards,
                self.events,
            )
        )


@dataclass(slots=True)
class _Person:
    index: int
    market: Market
    zone: ZoneInfo
    currency: str
    first_name: str
    last_name: str
    email: str
    first_seen_at: datetime | None = None
    orders: list[dict[str, Any]] = field(default_factory=list)
    has_x: bool = False


@dataclass(slots=True)
class _Pending:
    """An event waiting for the external ids of the order or card it talks about."""

    type: str
    occurred_at: datetime
    contact: int | None
    order: dict[str, Any] | None = None
    card: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def _price(product: Product, currency: str) -> Decimal:
    converted = product.price_eur * RATES[currency]
    if currency == "RON":
        return converted.quantize(Decimal("1")) - Decimal("0.01")  # 244.99 lei
    return converted.quantize(CENT)


_PRICES = {
    (product.sku, currency): _money(_price(product, currency)) for product in PRODUCTS for currency in RATES
}


def _black_friday(year: int) -> date:
    first = date(year, 11, 1)
    thursdays = [first + timedelta(days=d) for d in range(30) if (first + timedelta(days=d)).weekday() == 3]
    return thursdays[3] + timedelta(days=1)


class ShopBuilder:
    """Builds one season of one shop. ``build()`` is the only public step."""

    def __init__(
        self, *, contacts: int, seed: int, season: int, taken_emails: set[str] | None = None
    ) -> None:
        if contacts < 1:
            raise ValueError("the demo shop needs at least one contact")
        self.size = contacts
        self.seed = seed
        self.season = season
        self.rng = Draw(seed)
        self.care = Draw(seed * CARE_STREAM + 1)
        self._claims = 0
        self.pools: dict[str, NamePool] = build_name_pools(seed)
        self.book = AddressBook(self.rng, taken_emails)
        self.zones = {zone: ZoneInfo(zone) for market in MARKETS for zone, _ in market.zones}
        self.prefix = ids_for(seed)
        self.people: list[_Person] = []
        self.pending: list[_Pending] = []
        self.rows = DemoRows()
        self.season_end = datetime(season + 1, 1, 31, 22, 0, tzinfo=UTC)
        self._split: dict[Any, Any] = {}
        self._market_cum = list(itertools.accumulate(market.share for market in MARKETS))
        self._season_days, self._season_cum = self._holiday_calendar()

    # --- small draws ----------------------------------------------------------------

    def _weighted(self, pairs: tuple[tuple[Any, float], ...]) -> Any:
        split = self._split.get(pairs)
        if split is None:
            values, weights = zip(*pairs, strict=True)
            split = self._split[pairs] = (values, weights)
        return self.rng.weighted(*split)

    def _market(self) -> Market:
        point = self.rng.random() * self._market_cum[-1]
        return MARKETS[bisect.bisect_right(self._market_cum, point)]

    def _local(self, person: _Person, day: date, start_hour: int = 7, end_hour: int = 23) -> datetime:
        rng = self.rng
        moment = datetime(
            day.year,
            day.month,
            day.day,
            rng.between(start_hour, end_hour - 1),
            rng.below(60),
            rng.below(60),
            tzinfo=person.zone,
        )
        return moment.astimezone(UTC)

    def _day_between(self, start: date, end: date) -> date:
        return start + timedelta(days=self.rng.between(0, max(0, (end - start).days)))

    def _holiday_calendar(self) -> tuple[list[date], list[float]]:
        """Order days from 1 November to 23 December, weighted like a shop's real peak."""
        year = self.season
        friday = _black_friday(year)
        days, weights = [], []
        day = date(year, 11, 1)
        while day <= date(year, 12, 23):
            weight = 1.0
            if friday <= day <= friday + timedelta(days=3):  # Black Friday to Cyber Monday
                weight = 4.0
            elif date(year, 12, 1) <= day <= date(year, 12, 18):
                weight = 1.8
            elif day > date(year, 12, 18):
                weight = 0.8
            days.append(day)
            weights.append(weight)
            day += timedelta(days=1)
        return days, list(itertools.accumulate(weights))

    def _holiday_day(self) -> date:
        point = self.rng.random() * self._season_cum[-1]
        return self._season_days[bisect.bisect_right(self._season_cum, point)]

    # --- people ---------------------------------------------------------------------

    def _person(self, market: Market | None = None) -> _Person:
        market = market or self._market()
        pool = self.pools[market.country]
        rng = self.rng
        first = pool.first_names[rng.below(len(pool.first_names))]
        last = pool.last_names[rng.below(len(pool.last_names))]
        zone_name = market.zones[0][0] if len(market.zones) == 1 else self._weighted(market.zones)
        currency = (
            market.currencies[0][0] if len(market.currencies) == 1 else self._weighted(market.currencies)
        )
        person = _Person(
            index=len(self.people),
            market=market,
            zone=self.zones[zone_name],
            currency=currency,
            first_name=first,
            last_name=last,
            email=self.book.email(first, last),
        )
        self.people.append(person)
        return person

    # --- orders ---------------------------------------------------------------------

    def _items(self, currency: str) -> list[dict[str, Any]]:
        rng = self.rng
        count = rng.weighted((1, 2, 3), (55, 30, 15))
        items = []
        for product in rng.sample(PRODUCTS, count):
            price = _PRICES[product.sku, currency]
            items.append(
                {
                    "sku": product.sku,
                    "name": product.name,
                    "category": product.category,
                    "quantity": 1 if rng.random() < 0.85 else 2,
                    "unit_price": price,
                }
            )
        return items

    def _order(self, person: _Person, placed_at: datetime, *, holiday: bool) -> dict[str, Any]:
        rng = self.rng
        method = "express" if rng.random() < (0.35 if placed_at.month == 12 else 0.18) else "standard"
        items = self._items(person.currency)
        total = sum((Decimal(item["unit_price"]) * item["quantity"] for item in items), Decimal("0"))
        shipped_at = placed_at + timedelta(hours=rng.between(3, 40), minutes=rng.below(60))
        low, high = person.market.transit_days[method]
        delivered_at: datetime | None = shipped_at + timedelta(
            days=rng.between(low, high), hours=rng.between(1, 9)
        )
        order: dict[str, Any] = {
            "external_id": "",
            "contact_id": person.index,
            "status": "delivered",
            "placed_at": placed_at,
            "shipped_at": shipped_at,
            "delivered_at": delivered_at,
            "returned_at": None,
            "problem": None,
            "shipping_country": person.market.country,
            "shipping_method": method,
            "total": total.quantize(CENT),
            "currency": person.currency,
            "is_gift": rng.random() < (0.32 if holiday else 0.05),
            "items": items,
        }
        carrier = person.market.carriers[method]
        self.pending.append(_Pending("order.placed", placed_at, person.index, order))
        self.pending.append(
            _Pending("order.shipped", shipped_at, person.index, order, extra={"carrier": carrier})
        )
        roll = rng.random()
        if holiday and roll < 0.06:
            kind = rng.weighted(("late", "damaged", "lost"), (50, 30, 20))
            order["status"] = "problem"
            order["problem"] = kind
            assert delivered_at is not None
            if kind == "late":
                promised = delivered_at
                delivered_at = promised + timedelta(days=rng.between(4, 9))
                reported_at = promised + timedelta(days=1, hours=rng.between(0, 12))
            elif kind == "damaged":
                reported_at = delivered_at + timedelta(hours=rng.between(2, 30))
            else:
                delivered_at = None
                reported_at = shipped_at + timedelta(days=rng.between(8, 12))
            order["delivered_at"] = delivered_at
            extra = {"problem": kind, "detail": PROBLEMS[kind], "carrier": carrier}
            self.pending.append(_Pending("order.problem", reported_at, person.index, order, extra=extra))
            if reported_at.date() >= date(self.season, 12, 15):  # a Christmas parcel gone wrong
                self._claim(person, order, kind, reported_at)
        elif roll < (0.11 if holiday else 0.04):
            assert delivered_at is not None
            if holiday:
                window = self._day_between(date(self.season, 12, 26), date(self.season + 1, 1, 20))
                requested_at = max(self._local(person, window), delivered_at + timedelta(days=1))
            else:
                requested_at = delivered_at + timedelta(days=rng.between(2, 14), hours=rng.between(0, 12))
            order["status"] = "returned"
            order["returned_at"] = requested_at + timedelta(days=rng.between(3, 8), hours=rng.between(0, 8))
            extra = {"reason": rng.pick(RETURN_REASONS), "amount": _money(order["total"])}
            extra.update(self._return_label())
            self.pending.append(_Pending("return.requested", requested_at, person.index, order, extra=extra))
        elif holiday and rng.random() < (0.09 if order["is_gift"] else 0.03):
            assert delivered_at is not None
            window = self._day_between(date(self.season, 12, 26), date(self.season + 1, 1, 15))
            requested_at = max(self._local(person, window), delivered_at + timedelta(days=1))
            extra = {"reason": rng.pick(EXCHANGE_REASONS), "sku": items[0]["sku"]}
            extra.update(self._return_label())
            self.pending.append(
                _Pending("exchange.requested", requested_at, person.index, order, extra=extra)
            )
            self._exchange_shipped(person, order, requested_at)
        elif holiday and delivered_at is not None and self.care.random() < 0.02:
            self._defect_claim(person, order, delivered_at)
        if delivered_at is not None and delivered_at > self.season_end:
            order["status"] = "shipped" if order["status"] == "delivered" else order["status"]
            order["delivered_at"] = delivered_at = None
        if delivered_at is not None:
            self.pending.append(_Pending("order.delivered", delivered_at, person.index, order))
        person.orders.append(order)
        self.rows.orders.append(order)
        return order

    def _customer(self) -> _Person:
        rng = self.rng
        person = self._person()
        year = self.season
        if rng.random() >= LEAD_SHARE:
            holiday_buyer = rng.random() < 0.75
            if not holiday_buyer or rng.random() < 0.3:
                for _ in range(rng.weighted((1, 2), (70, 30))):
                    day = self._day_between(date(year, 1, 5), date(year, 10, 31))
                    self._order(person, self._local(person, day), holiday=False)
            if holiday_buyer:
                for _ in range(rng.weighted((1, 2, 3), (68, 24, 8))):
                    self._order(person, self._local(person, self._holiday_day()), holiday=True)
        earliest = date(year - 2, 1, 1)
        if person.orders:
            first_order = min(order["placed_at"] for order in person.orders)
            seen_day = first_order.date() - timedelta(days=rng.between(1, 500))
            person.first_seen_at = self._local(person, max(earliest, seen_day))
        else:
            person.first_seen_at = self._local(person, self._day_between(earliest, date(year, 10, 31)))
        person.has_x = rng.random() < X_HANDLE_SHARE
        return person

    # --- gift cards -----------------------------------------------------------------

    def _gift_card(self, purchaser: _Person) -> None:
        rng = self.rng
        year = self.season
        market = purchaser.market if rng.random() < 0.85 else self._market()
        recipient = self._person(market)
        amount_eur = rng.pick(GIFT_CARD_AMOUNTS_EUR)
        currency = purchaser.currency
        amount = amount_eur * 5 if currency == "RON" else amount_eur
        issued_at = self._local(purchaser, self._day_between(date(year, 11, 20), date(year, 12, 24)))
        card: dict[str, Any] = {
            "external_id": "",
            "code_last4": f"{rng.below(10_000):04d}",
            "purchaser_contact_id": purchaser.index,
            "recipient_contact_id": recipient.index,
            "amount": amount.quantize(CENT),
            "balance": amount.quantize(CENT),
            "currency": currency,
            "issued_at": issued_at,
            "redeemed_at": None,
            "is_digital": rng.random() < 0.8,
        }
        self.rows.gift_cards.append(card)
        send_on = self._send_on(issued_at, recipient, digital=card["is_digital"])
        extra: dict[str, Any] = {
            "recipient_email": recipient.email,
            "recipient_name": f"{recipient.first_name} {recipient.last_name}",
            "recipient_country": recipient.market.country,
            "sender_name": purchaser.first_name,
            "_recipient": recipient.index,  # locale and note are filled in once the contact has its locale
        }
        if send_on is not None:
            extra["send_on"] = send_on.isoformat()
        if card["is_digital"]:
            extra["redeem_url"] = f"{SHOP_URL}/gift-cards/redeem/{self.care.below(16**12):012x}"
        self.pending.append(
            _Pending("gift_card.purchased", issued_at, purchaser.index, card=card, extra=extra)
        )
        if send_on is not None and self.care.random() < 0.05:
            self._card_claim(purchaser, send_on)
        if rng.random() < 0.88:
            day = self._day_between(date(year, 12, 24), date(year + 1, 1, 20))
            redeemed_at = max(self._local(recipient, day, 8, 23), issued_at + timedelta(hours=2))
            if send_on is not None:  # nobody redeems a card before it arrives (09:00 their time)
                arrives = datetime.combine(send_on, time(9), tzinfo=recipient.zone).astimezone(UTC)
                redeemed_at = max(redeemed_at, arrives + timedelta(minutes=self.care.between(5, 600)))
            visited_at = redeemed_at - timedelta(minutes=rng.between(2, 25))
            recipient.first_seen_at = visited_at
            card["redeemed_at"] = redeemed_at
            visit = {"landing_page": "/gift-cards/redeem", "referrer": "gift_card_email"}
            self.pending.append(
                _Pending("site.first_visit", visited_at, recipient.index, card=card, extra=visit)
            )
            self.pending.append(_Pending("gift_card.redeemed", redeemed_at, recipient.index, card=card))
            if rng.random() < 0.45:
                placed_at = redeemed_at + timedelta(days=rng.between(1, 20), hours=rng.between(0, 10))
                if placed_at < self.season_end - timedelta(days=1):
                    order = self._order(recipient, placed_at, holiday=False)
                    used = min(order["total"], card["amount"])
                    card["balance"] = (card["amount"] - used).quantize(CENT)
                    order["_gift_card"] = (card, used)

    # --- care: deliveries, labels, exchanges, claims (the second stream) -------------

    def _send_on(self, issued_at: datetime, recipient: _Person, *, digital: bool) -> date | None:
        """Most digital cards bought before Christmas Eve arrive on a December day; the rest at once."""
        care = self.care
        if not digital or care.random() >= 0.7:
            return None
        issued = issued_at.astimezone(recipient.zone).date()
        year = self.season
        wanted = care.weighted((date(year, 12, 23), date(year, 12, 24), date(year, 12, 25)), (15, 65, 20))
        return wanted if wanted > issued else None

    def _return_label(self) -> dict[str, str]:
        if self.care.random() < 0.75:
            return {"label_url": f"{SHOP_URL}/returns/label/{self.care.below(16**10):010x}"}
        return {}

    def _next_claim_id(self) -> str:
        self._claims += 1
        return f"{self.prefix['claim']}{self._claims:05d}"

    def _claim(self, person: _Person, order: dict[str, Any], reason: str, reported_at: datetime) -> None:
        """Most damaged or lost parcels (fewer late ones) become a claim; most claims end within days."""
        care = self.care
        if care.random() >= {"damaged": 0.85, "lost": 0.9, "late": 0.35, "defective": 1.0}[reason]:
            return
        claim_id = self._next_claim_id()
        # The customer files it in their waking hours; support closes it in office hours (09–17).
        opened_at = self._care_moment(person, reported_at + timedelta(hours=care.between(1, 30)), 8, 22)
        if opened_at >= self.season_end:
            return
        extra = {"claim_id": claim_id, "reason": reason}
        self.pending.append(_Pending("claim.opened", opened_at, person.index, order, extra=dict(extra)))
        resolved_at = self._care_moment(person, opened_at + timedelta(days=care.between(1, 12)), 9, 17)
        if care.random() < 0.85 and resolved_at < self.season_end:
            extra["resolution"] = self._weighted_care(CLAIM_RESOLUTIONS[reason])
            self.pending.append(_Pending("claim.resolved", resolved_at, person.index, order, extra=extra))

    def _care_moment(self, person: _Person, after: datetime, first_hour: int, last_hour: int) -> datetime:
        """A moment between ``first_hour`` and ``last_hour`` local time, on ``after``'s day or the next."""
        local = after.astimezone(person.zone)
        day = local.date() if local.hour < last_hour else local.date() + timedelta(days=1)
        moment = datetime.combine(
            day, time(self.care.between(first_hour, last_hour - 1), self.care.below(60)), tzinfo=person.zone
        )
        while moment <= after:
            moment += timedelta(days=1)
        return moment.astimezone(UTC)

    def _defect_claim(self, person: _Person, order: dict[str, Any], delivered_at: datetime) -> None:
        """A gift unwrapped at Christmas turns out faulty: a claim between Christmas and mid-January."""
        day = date(self.season, 12, 25) + timedelta(days=self.care.between(0, 21))
        moment = datetime.combine(
            day, time(self.care.between(9, 21), self.care.below(60)), tzinfo=person.zone
        )
        opened_at = max(moment.astimezone(UTC), delivered_at + timedelta(days=1))
        self._claim(person, order, "defective", opened_at - timedelta(hours=1))

    def _card_claim(self, purchaser: _Person, send_on: date) -> None:
        """A buyer whose recipient never got the card: a claim without an order, resolved by resending."""
        care = self.care
        asked = datetime.combine(send_on, time(care.between(12, 19), care.below(60)), tzinfo=purchaser.zone)
        extra = {"claim_id": self._next_claim_id(), "reason": "gift_card_not_received"}
        self.pending.append(
            _Pending("claim.opened", asked.astimezone(UTC), purchaser.index, extra=dict(extra))
        )
        extra["resolution"] = "resent"
        resolved = self._care_moment(purchaser, asked + timedelta(hours=1), 9, 17)
        self.pending.append(_Pending("claim.resolved", resolved, purchaser.index, extra=extra))

    def _exchange_shipped(self, person: _Person, order: dict[str, Any], requested_at: datetime) -> None:
        care = self.care
        shipped_at = self._care_moment(person, requested_at + timedelta(days=care.between(1, 5)), 9, 17)
        if care.random() >= 0.92 or shipped_at >= self.season_end:
            return
        tracking = f"{care.below(10**10):010d}"
        extra = {
            "carrier": person.market.carriers["standard"],
            "tracking_number": tracking,
            "tracking_url": f"https://track.example.com/{tracking}",
        }
        self.pending.append(_Pending("exchange.shipped", shipped_at, person.index, order, extra=extra))

    def _weighted_care(self, pairs: tuple[tuple[str, float], ...]) -> str:
        values, weights = zip(*pairs, strict=True)
        return self.care.weighted(values, weights)

    def _recipient_details(self, extra: dict[str, Any]) -> None:
        """The recipient's locale (as their contact row has it) and a note in their language."""
        contact = self.rows.contacts[extra.pop("_recipient")]
        locale = contact["locale"]
        if locale:
            extra["recipient_locale"] = locale
        if self.care.random() < 0.8:
            extra["message"] = self.care.pick(GIFT_MESSAGES[(locale or "en").split("-")[0]])

    # --- consent, suppressions, tags ------------------------------------------------

    def _wording(self, versions: tuple[tuple[int, str], ...], when: datetime) -> str:
        chosen = versions[0][1]
        for year, version in versions:
            if when.year >= year:
                chosen = version
        return chosen

    def _consents(self, person: _Person, *, recipient: bool) -> tuple[str | None, datetime | None]:
        """Adds the person's consent rows; returns (email consent source, withdrawal time if withdrawn)."""
        rng = self.rng
        source: str | None = None
        withdrawn_at: datetime | None = None
        withdrawn_source: str | None = None
        granted_at: datetime | None = None
        if recipient:
            if person.first_seen_at is not None and rng.random() < 0.35:
                source, granted_at = (
                    "newsletter_form",
                    person.first_seen_at + timedelta(minutes=rng.between(1, 8)),
                )
        elif rng.random() < EMAIL_CONSENT:
            assert person.first_seen_at is not None
            if person.orders:
                source = rng.weighted(("checkout", "newsletter_form", "import"), (62, 28, 10))
            else:
                source = rng.weighted(("newsletter_form", "import"), (80, 20))
            if source == "checkout":
                granted_at = min(order["placed_at"] for order in person.orders)
            elif source == "newsletter_form":
                granted_at = person.first_seen_at + timedelta(seconds=rng.between(30, 3600))
            else:
                granted_at = person.first_seen_at
        if source is not None and granted_at is not None:
            if rng.random() < WITHDRAWN:
                candidate = granted_at + timedelta(days=rng.between(5, 400), hours=rng.between(0, 23))
                if candidate < self.season_end:
                    withdrawn_at = candidate
                    withdrawn_source = "unsubscribe_link" if rng.random() < 0.65 else "account_settings"
            self.rows.consents.append(
                {
                    "contact_id": person.index,
                    "channel": "email",
                    "granted_at": granted_at,
                    "withdrawn_at": withdrawn_at,
                    "source": source,
                    "wording_version": self._wording(EMAIL_WORDING, granted_at),
                    "legal_basis": "consent",
                    "withdrawn_source": withdrawn_source,
                }
            )
        if person.has_x and person.first_seen_at is not None and rng.random() < 0.5:
            x_granted = person.first_seen_at + timedelta(minutes=rng.between(1, 600))
            self.rows.consents.append(
                {
                    "contact_id": person.index,
                    "channel": "x",
                    "granted_at": x_granted,
                    "withdrawn_at": None,
                    "source": "checkout" if person.orders else "newsletter_form",
                    "wording_version": self._wording(X_WORDING, x_granted),
                    "legal_basis": "consent",
                    "withdrawn_source": None,
                }
            )
        if withdrawn_at is not None and withdrawn_source == "unsubscribe_link":
            return source, withdrawn_at
        return source, None

    def _suppression(self, person: _Person, unsubscribed_at: datetime | None) -> None:
        rng = self.rng
        roll = rng.random()
        if unsubscribed_at is not None:
            reason, source, when = "unsubscribe", "unsubscribe_link", unsubscribed_at
        elif roll < 0.008:
            reason, source = "hard_bounce", "sendgrid"
            when = self._local(
                person, self._day_between(date(self.season, 11, 5), date(self.season + 1, 1, 25))
            )
        elif roll < 0.010:
            reason, source = "spam_report", "sendgrid"
            when = self._local(
                person, self._day_between(date(self.season, 11, 5), date(self.season + 1, 1, 25))
            )
        else:
            return
        self.rows.suppressions.append(
            {
                "email": person.email,
                "channel": "email",
                "reason": reason,
                "source": source,
                "created_at": when,
            }
        )

    def _contact_row(
        self, person: _Person, *, recipient: bool, buyer: bool, consent_source: str | None
    ) -> None:
        rng = self.rng
        market = person.market
        locale = self._weighted(market.locales)
        tags: list[str] = []
        attributes: dict[str, Any] = {}
        counted = [order for order in person.orders if order["status"] != "cancelled"]
        if recipient:
            tags.append("gift-card-recipient")
            attributes["acquired_via"] = "gift_card"
            if rng.random() < 0.5:
                attributes["city"] = rng.pick(market.cities)
        else:
            if len(counted) >= 3 or rng.random() < 0.04:
                tags.append("vip")
            if rng.random() < 0.02:
                tags.append("wholesale")
            if rng.random() < 0.03:
                tags.append("early-access")
            if buyer:
                tags.append("gift-buyer")
            if rng.random() < 0.9:
                attributes["city"] = rng.pick(market.cities)
            if person.orders:
                latest = max(person.orders, key=lambda order: order["placed_at"])
                attributes["favourite_category"] = latest["items"][0]["category"]
            elif rng.random() < 0.5:
                attributes["favourite_category"] = rng.pick(CATEGORIES)
            if rng.random() < 0.55:
                attributes["birthday_month"] = rng.between(1, 12)
        if consent_source == "newsletter_form":
            tags.append("newsletter")
        first_seen = person.first_seen_at
        if counted:
            earliest = min(order["placed_at"] for order in counted)
            first_seen = earliest if first_seen is None else min(first_seen, earliest)
        x_handle = self.book.x_handle(person.first_name, person.last_name) if person.has_x else None
        self.rows.contacts.append(
            {
                "external_id": f"{self.prefix['contact']}{person.index + 1:06d}",
                "email": person.email,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "locale": locale,
                "country": market.country,
                "timezone": person.zone.key,
                "x_handle": x_handle,
                "tags": sorted(tags),
                "attributes": attributes,
                "first_seen_at": first_seen,
                "last_order_at": max((order["placed_at"] for order in counted), default=None),
                "orders_count": len(counted),
                "total_spent": sum(
                    (order["total"] for order in counted if order["status"] != "returned"), Decimal("0.00")
                ).quantize(CENT),
            }
        )

    # --- assembly -------------------------------------------------------------------

    def build(self) -> DemoRows:
        rng = self.rng
        recipients = round(self.size * RECIPIENT_SHARE) if self.size >= 5 else 0
        customers = [self._customer() for _ in range(self.size - recipients)]
        holiday_shoppers = [
            p for p in customers if any(o["placed_at"].month >= 11 for o in p.orders)
        ] or customers
        buyers: set[int] = set()
        for _ in range(recipients):
            purchaser = holiday_shoppers[rng.below(len(holiday_shoppers))]
            buyers.add(purchaser.index)
            self._gift_card(purchaser)
        recipient_ids = {card["recipient_contact_id"] for card in self.rows.gift_cards}
        for person in self.people:
            is_recipient = person.index in recipient_ids
            source, unsubscribed_at = self._consents(person, recipient=is_recipient)
            self._suppression(person, unsubscribed_at)
            self._contact_row(
                person, recipient=is_recipient, buyer=person.index in buyers, consent_source=source
            )
        self._number()
        return self.rows

    def _number(self) -> None:
        """External ids follow time, as a shop's order numbers do; events get their payloads."""
        self.rows.orders.sort(key=lambda order: order["placed_at"])
        for number, order in enumerate(self.rows.orders, start=1):
            order["external_id"] = f"{self.prefix['order']}{number:06d}"
        self.rows.gift_cards.sort(key=lambda card: card["issued_at"])
        for number, card in enumerate(self.rows.gift_cards, start=1):
            card["external_id"] = f"{self.prefix['gift_card']}{number:05d}"
        self.pending.sort(key=lambda pending: pending.occurred_at)
        for pending in self.pending:
            if "_recipient" in pending.extra:
                self._recipient_details(pending.extra)
        for number, pending in enumerate(self.pending, start=1):
            self.rows.events.append(
                {
                    "external_id": f"{self.prefix['event']}{number:07d}",
                    "type": pending.type,
                    "contact_id": pending.contact,
                    "occurred_at": pending.occurred_at,
                    "received_at": pending.occurred_at,
                    "processed_at": None,
                    "payload": _payload(pending),
                }
            )
        for order in self.rows.orders:
            order.pop("_gift_card", None)


def _payload(pending: _Pending) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    order, card = pending.order, pending.card
    if order is not None:
        payload["order_id"] = order["external_id"]
        if pending.type == "order.placed":
            payload.update(
                {
                    "total": _money(order["total"]),
                    "currency": order["currency"],
                    "items_count": sum(item["quantity"] for item in order["items"]),
                    "shipping_method": order["shipping_method"],
                    "shipping_country": order["shipping_country"],
                    "is_gift": order["is_gift"],
                }
            )
            paid_with = order.get("_gift_card")
            if paid_with is not None:
                used_card, used = paid_with
                payload["gift_card_id"] = used_card["external_id"]
                payload["gift_card_amount_used"] = _money(used)
    if card is not None:
        payload["gift_card_id"] = card["external_id"]
        payload["amount"] = _money(card["amount"])
        payload["currency"] = card["currency"]
        if pending.type == "gift_card.redeemed":
            payload["balance"] = _money(card["amount"])  # nothing is spent at the moment of redemption
    payload.update(pending.extra)
    return payload
