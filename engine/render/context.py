"""The template context: the same names for every template and every campaign EXPR.

Values are :class:`~engine.render.record.Record` objects (see there why not dicts). What the names
are, which fields each record has and of which kind is defined once, in
:mod:`engine.workspace.context_schema`; the builders here fill exactly those fields.

Two sources, typed alike so that a sample renders like a real send: store rows (``Contact``,
``ShopOrder``, ``GiftCard``, ``Coupon``, ``ShopEvent``) and a template's ``sample.yaml``
(:func:`read_sample`: money → ``Decimal``, ids → whole numbers, date-times aware, free-form data
as JSON would give it; an unknown key or a value of the wrong kind is a problem at its own line).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import Row

from engine.errors import Problem, SourceLocation
from engine.render.errors import RenderError
from engine.render.record import Record
from engine.settings import Settings
from engine.store.models import Contact, Coupon, GiftCard, ShopEvent, ShopOrder
from engine.workspace import context_schema as schema
from engine.workspace.yaml_source import Loc, SourceMap, read_yaml

ALWAYS = tuple(spec.name for spec in schema.ALWAYS)
OPTIONAL = tuple(spec.name for spec in schema.OPTIONAL)
# Also present while rendering an email: its rendered subject and preheader (for <mj-title>, <mj-preview>).
MESSAGE_NAMES = schema.MESSAGE_NAMES
CONTEXT_NAMES = schema.CONTEXT_NAMES


# --- from store rows ---------------------------------------------------------------------


def contact_record(
    contact: Contact | Row[Any], *, zone: str | None = None, zone_source: str | None = None
) -> Record:
    """A contact as templates see it; ``zone`` is the zone the message uses (``timezone`` shows it,
    ``timezone_source`` says whether it is the contact's own or a fallback)."""
    computed = {
        "name": " ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
        "timezone": zone or contact.timezone,
        "timezone_source": zone_source or ("contact" if contact.timezone else None),
        "tags": list(contact.tags or []),
        "attributes": dict(contact.attributes or {}),
    }
    return Record(
        {name: computed[name] if name in computed else getattr(contact, name) for name in _CONTACT_FIELDS}
    )


_CONTACT_FIELDS = schema.CONTACT.names
#: Record field → store column, where the names differ (the shop's own id is the one customers see).
_ORDER_COLUMNS = {"id": "external_id", "number": "external_id"}
_CARD_COLUMNS = {"id": "external_id"}


def order_record(order: ShopOrder | Row[Any]) -> Record:
    fields = {name: getattr(order, _ORDER_COLUMNS.get(name, name)) for name in schema.ORDER.names}
    fields["items"] = list(order.items or [])
    return Record(fields)


def gift_card_record(card: GiftCard | Row[Any]) -> Record:
    return Record({name: getattr(card, _CARD_COLUMNS.get(name, name)) for name in schema.GIFT_CARD.names})


def coupon_record(coupon: Coupon) -> Record:
    return Record(
        {
            "code": coupon.code,
            "percent": coupon.percent,
            "expires_at": coupon.expires_at,
            "placeholder": bool(getattr(coupon, "placeholder", False)),
        }
    )


def event_record(event: ShopEvent | Row[Any]) -> Record:
    return Record({"type": event.type, "occurred_at": event.occurred_at, "data": dict(event.payload or {})})


def cutoff_record(cutoff: Any) -> Record:
    """A shipping cutoff from the workspace schedules (any object or mapping with these fields)."""
    get = cutoff.get if isinstance(cutoff, Mapping) else (lambda key: getattr(cutoff, key, None))
    return Record({key: get(key) for key in schema.CUTOFF.names})


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


class _SampleTyper:
    """Types one sample against the context definition, collecting a located problem per defect."""

    def __init__(self, source: SourceMap, zone: tzinfo) -> None:
        self.source = source
        self.zone = zone
        self.problems: list[Problem] = []

    def problem(self, loc: Loc, message: str, *, at_key: bool = False) -> None:
        self.problems.append(Problem(self.source.location(loc, at_key=at_key), message))

    def record(self, spec: schema.RecordSpec, value: Any, loc: Loc) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(loc, f"{spec.name} must be a mapping of its fields ({', '.join(spec.names)})")
            return None
        typed: dict[str, Any] = {}
        for key, item in value.items():
            field = spec.by_name.get(str(key))
            if field is None:
                self.problem(
                    (*loc, key),
                    f"{spec.name} has no field '{key}'{schema.did_you_mean(str(key), spec.names)} "
                    f"({spec.name} has: {', '.join(spec.names)})",
                    at_key=True,
                )
                continue
            typed[field.name] = self.value(field, item, (*loc, key), f"{spec.name}.{field.name}")
        return typed

    def value(self, field: schema.FieldSpec, value: Any, loc: Loc, path: str) -> Any:
        if value is None:
            if not field.nullable:
                self.problem(loc, f"{path} cannot be empty: a real {path} always has a value")
            return None
        if field.kind is schema.Kind.record:
            assert field.record is not None
            return self.record(field.record, value, loc)
        try:
            return schema.coerce(field.kind, value, self.zone)
        except schema.ValueProblem as exc:
            self.problem(loc, f"{path}: {exc}")
            return None


def read_sample(path: Path, settings: Settings) -> tuple[dict[str, Any], list[Problem]]:
    """``sample.yaml`` typed like real values, and every problem at its own line (``{}`` when absent).

    Read like every workspace YAML file (``read_yaml``: size and alias budgets, a located
    problem for anything the YAML library fails on). A key that is not a context name, a field a
    record does not have, and a value of the wrong kind are problems; the rest is kept.
    """
    if not path.is_file():
        return {}, []
    document, problems = read_yaml(path)
    errors = [problem for problem in problems if problem.severity == "error"]
    if document is None or errors:
        return {}, errors
    data = document.data
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        where = SourceLocation(path, 1, 1)
        listed = ", ".join(schema.CONTEXT_NAMES)
        return {}, [Problem(where, f"sample.yaml must be a mapping of context names ({listed})")]
    typer = _SampleTyper(document.source, _zone_of(data, settings.timezone))
    known = {spec.name: spec for spec in (*schema.CONTEXT.fields, *schema.SAMPLE_ONLY)}
    typed: dict[str, Any] = {}
    for key, value in data.items():
        spec = known.get(key)
        if spec is None:
            allowed = tuple(known)
            typer.problem(
                (key,),
                f"unknown name '{key}'{schema.did_you_mean(key, allowed)} (a sample holds some of: "
                f"{', '.join(allowed)})",
                at_key=True,
            )
            continue
        typed[key] = typer.value(spec, value, (key,), key)
    return typed, typer.problems


def load_sample(path: Path, settings: Settings) -> dict[str, Any]:
    """:func:`read_sample`, with its first problem raised as the :class:`RenderError` (preview, render)."""
    sample, problems = read_sample(path, settings)
    if problems:
        first = problems[0]
        raise RenderError(f"sample: {first.message}", path=path, line=first.location.line)
    return sample


def _filled(spec: schema.RecordSpec, value: Any, now: datetime) -> Any:
    """A sample record with every field a real one has: those the sample leaves out are ``None`` when
    a real record may leave them empty, else an example of their kind (a template may read any field
    a real record has; a sample need only give those worth seeing in the preview)."""
    if not isinstance(value, Mapping) or isinstance(value, Record):
        return value
    example = schema.example_record(spec, now)
    filled = {field.name: None if field.nullable else example[field.name] for field in spec.fields}
    filled.update(value)
    return filled


def sample_context(
    sample: Mapping[str, Any], settings: Settings, *, now: datetime | None = None
) -> dict[str, Any]:
    """A full context from a sample; the sample's ``shop`` overrides the settings (preview/validate only)."""
    moment = sample.get("now") or now or datetime.now(UTC)
    if isinstance(moment, date) and not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(9, 0), tzinfo=UTC)
    shop = {**settings.shop.as_context(), **dict(sample.get("shop") or {})}
    contact = sample.get("contact") or {"id": 1, "email": "sample@example.com"}
    if not isinstance(contact, Record):
        defaults: dict[str, Any] = {
            "id": 1,
            "email": "sample@example.com",
            "tags": [],
            "attributes": {},
            "orders_count": 0,
            "total_spent": Decimal("0"),
        }
        contact = {**_filled(schema.CONTACT, {}, moment), **defaults, **dict(contact)}
        if contact.get("name") is None:
            contact["name"] = " ".join(p for p in (contact["first_name"], contact["last_name"]) if p) or None
    context = build_context(
        settings,
        contact=contact,
        now=moment,
        campaign=sample.get("campaign") or {"id": "sample", "name": "Sample"},
        occurrence=sample.get("occurrence"),
        order=_filled(schema.ORDER, sample.get("order"), moment),
        gift_card=_filled(schema.GIFT_CARD, sample.get("gift_card"), moment),
        cutoff=_filled(schema.CUTOFF, sample.get("cutoff"), moment),
        coupon=_filled(schema.COUPON, sample.get("coupon"), moment),
        event=_filled(schema.EVENT, sample.get("event"), moment),
        trigger_date=sample.get("trigger_date"),
        unsubscribe_url=sample.get("unsubscribe_url"),
        shop=shop,
    )
    return context
