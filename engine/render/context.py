"""The template context: the same names for every template and every campaign EXPR.

Values are :class:`~engine.render.record.Record` objects (see there why not dicts).

Two sources, coerced to the same types so that a sample renders like a real send:
store rows (``Contact``, ``ShopOrder``, ``GiftCard``, ``Coupon``, ``ShopEvent``) and a
template's ``sample.yaml`` (ISO date-times → aware datetimes, money → ``Decimal``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import Row

from engine.render.errors import RenderError
from engine.render.record import Record
from engine.settings import Settings
from engine.store.models import Contact, Coupon, GiftCard, ShopEvent, ShopOrder
from engine.workspace.yaml_source import read_yaml

ALWAYS = ("contact", "campaign", "shop", "unsubscribe_url", "now", "occurrence")
OPTIONAL = ("order", "gift_card", "cutoff", "coupon", "event", "trigger_date")
# Also present while rendering an email: its rendered subject and preheader (for <mj-title>, <mj-preview>).
MESSAGE_NAMES = ("subject", "preheader")
CONTEXT_NAMES = ALWAYS + OPTIONAL
MONEY_KEYS = frozenset(
    {"total", "total_spent", "amount", "balance", "price", "subtotal", "percent", "discount"}
)


# --- from store rows ---------------------------------------------------------------------


def contact_record(
    contact: Contact | Row[Any], *, zone: str | None = None, zone_source: str | None = None
) -> Record:
    """A contact as templates see it; ``zone`` is the zone the message uses (``timezone`` shows it,
    ``timezone_source`` says whether it is the contact's own or a fallback)."""
    return Record(
        {
            "id": contact.id,
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "name": " ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
            "locale": contact.locale,
            "country": contact.country,
            "timezone": zone or contact.timezone,
            "timezone_source": zone_source or ("contact" if contact.timezone else None),
            "x_handle": contact.x_handle,
            "tags": list(contact.tags or []),
            "attributes": dict(contact.attributes or {}),
            "orders_count": contact.orders_count,
            "total_spent": contact.total_spent,
            "first_seen_at": contact.first_seen_at,
            "last_order_at": contact.last_order_at,
        }
    )


def order_record(order: ShopOrder | Row[Any]) -> Record:
    return Record(
        {
            "id": order.external_id,
            "number": order.external_id,
            "status": order.status,
            "placed_at": order.placed_at,
            "shipped_at": order.shipped_at,
            "delivered_at": order.delivered_at,
            "returned_at": order.returned_at,
            "problem": order.problem,
            "shipping_country": order.shipping_country,
            "shipping_method": order.shipping_method,
            "total": order.total,
            "currency": order.currency,
            "is_gift": order.is_gift,
            "items": list(order.items or []),
        }
    )


def gift_card_record(card: GiftCard | Row[Any]) -> Record:
    return Record(
        {
            "id": card.external_id,
            "code_last4": card.code_last4,
            "amount": card.amount,
            "balance": card.balance,
            "currency": card.currency,
            "issued_at": card.issued_at,
            "redeemed_at": card.redeemed_at,
            "is_digital": card.is_digital,
        }
    )


def coupon_record(coupon: Coupon) -> Record:
    return Record({"code": coupon.code, "percent": coupon.percent, "expires_at": coupon.expires_at})


def event_record(event: ShopEvent | Row[Any]) -> Record:
    return Record({"type": event.type, "occurred_at": event.occurred_at, "data": dict(event.payload or {})})


def cutoff_record(cutoff: Any) -> Record:
    """A shipping cutoff from the workspace schedules (any object or mapping with these fields)."""
    get = cutoff.get if isinstance(cutoff, Mapping) else (lambda key: getattr(cutoff, key, None))
    return Record({key: get(key) for key in ("order_by", "method", "carrier", "deliver_before", "country")})


def _record(value: Any, builder: Any) -> Record | None:
    if value is None or isinstance(value, Record):
        return value
    if isinstance(value, Mapping):
        return Record(value)
    return builder(value)  # type: ignore[no-any-return]


def build_context(
    settings: Settings,
    *,
    contact: Contact | Record | Mapping[str, Any] | None,
    now: datetime,
    campaign: Mapping[str, Any] | Record | None = None,
    occurrence: Any = None,
    order: ShopOrder | Row[Any] | Record | None = None,
    gift_card: GiftCard | Row[Any] | Record | None = None,
    cutoff: Any = None,
    coupon: Coupon | Record | Mapping[str, Any] | None = None,
    event: ShopEvent | Row[Any] | Record | None = None,
    trigger_date: date | None = None,
    unsubscribe_url: str | None = None,
    shop: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every name a template may use; absent optional ones are ``None`` so ``{% if coupon %}`` works.

    ``unsubscribe_url`` left ``None`` is filled by the renderer (signed for this contact and campaign).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return {
        "contact": _record(contact, contact_record),
        "campaign": _record(campaign, Record),
        "shop": Record(shop if shop is not None else settings.shop.as_context()),
        "unsubscribe_url": unsubscribe_url,
        "now": now,
        "occurrence": occurrence if occurrence is not None else now,
        "order": _record(order, order_record),
        "gift_card": _record(gift_card, gift_card_record),
        "cutoff": None
        if cutoff is None
        else (cutoff if isinstance(cutoff, Record) else cutoff_record(cutoff)),
        "coupon": _record(coupon, coupon_record),
        "event": _record(event, event_record),
        "trigger_date": trigger_date,
    }


# --- from sample.yaml --------------------------------------------------------------------


def _zone_of(data: Mapping[str, Any], fallback: str) -> ZoneInfo:
    contact = data.get("contact")
    name = contact.get("timezone") if isinstance(contact, Mapping) else None
    try:
        return ZoneInfo(str(name or fallback))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(fallback)


def _coerce(value: Any, key: str, zone: ZoneInfo) -> Any:
    """Values as the store would give them: aware datetimes, ``Decimal`` money."""
    if isinstance(value, Mapping):
        return {str(k): _coerce(v, str(k), zone) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(item, key, zone) for item in value]
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 16 and text[4:5] == "-" and text[10:11] in ("T", " "):
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return value
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
        if len(text) == 10 and text[4:5] == "-" and text[7:8] == "-":
            try:
                return date.fromisoformat(text)
            except ValueError:
                return value
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, float) or (isinstance(value, int) and key in MONEY_KEYS):
        return Decimal(str(value))
    return value


def load_sample(path: Path, settings: Settings) -> dict[str, Any]:
    """Read ``sample.yaml`` into plain, coerced values (``{}`` when the file does not exist).

    Read like every workspace YAML file (``read_yaml``: size and alias budgets, a located
    problem for anything the YAML library fails on); the first problem is the render error.
    """
    if not path.is_file():
        return {}
    document, problems = read_yaml(path)
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors:
        first = errors[0]
        raise RenderError(f"sample: {first.message}", path=path, line=first.location.line)
    data = (document.data if document is not None else None) or {}
    if not isinstance(data, dict):
        raise RenderError("sample.yaml must be a mapping of context names", path=path)
    unknown = sorted(set(data) - set(CONTEXT_NAMES) - {"locale"})
    if unknown:
        expected = ", ".join(CONTEXT_NAMES)
        raise RenderError(f"sample: unknown name {unknown[0]!r} (expected some of {expected})", path=path)
    coerced = _coerce(data, "", _zone_of(data, settings.timezone))
    assert isinstance(coerced, dict)
    return coerced


def sample_context(
    sample: Mapping[str, Any], settings: Settings, *, now: datetime | None = None
) -> dict[str, Any]:
    """A full context from a sample; the sample's ``shop`` overrides the settings (preview/validate only)."""
    moment = sample.get("now") or now or datetime.now(UTC)
    if isinstance(moment, date) and not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(9, 0), tzinfo=UTC)
    shop = {**settings.shop.as_context(), **dict(sample.get("shop") or {})}
    contact = sample.get("contact") or {"id": 1, "email": "sample@example.com"}
    defaults: dict[str, Any] = {
        "locale": None,
        "country": None,
        "timezone": None,
        "first_name": None,
        "last_name": None,
        "tags": [],
        "attributes": {},
        "orders_count": 0,
        "total_spent": Decimal("0"),
        "first_seen_at": None,
        "last_order_at": None,
        "x_handle": None,
    }
    contact = {**defaults, **dict(contact)}
    contact.setdefault(
        "name", " ".join(p for p in (contact["first_name"], contact["last_name"]) if p) or None
    )
    context = build_context(
        settings,
        contact=contact,
        now=moment,
        campaign=sample.get("campaign") or {"id": "sample", "name": "Sample"},
        occurrence=sample.get("occurrence"),
        order=sample.get("order"),
        gift_card=sample.get("gift_card"),
        cutoff=Record(sample["cutoff"]) if sample.get("cutoff") else None,
        coupon=sample.get("coupon"),
        event=sample.get("event"),
        trigger_date=sample.get("trigger_date"),
        unsubscribe_url=sample.get("unsubscribe_url"),
        shop=shop,
    )
    return context
