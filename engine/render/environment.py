"""The Jinja2 environments every template (and every campaign EXPR) runs in.

Why these choices:

* ``ImmutableSandboxedEnvironment``: templates are user content and the context holds
  shared objects (the same contact record renders several messages). The sandbox refuses
  ``_``-prefixed attributes (``''.__class__``, ``lipsum.__globals__``,
  ``self._TemplateReference__context``), unsafe ``str.format`` calls and mutating methods
  (``contact.tags.append``).
* ``StrictUndefined``: a misspelt name is an error at validate time, never an empty gap in a
  sent email. Names that may be absent (``order``, ``coupon`` …) are present as ``None``.
* HTML templates autoescape, so contact data containing ``<script>`` or ``{{ 7*7 }}`` is text;
  the plain-text part and subjects use a second sandboxed environment without HTML escaping.
* Comments: the HTML given to Jinja is MRML's output, whose minified CSS may contain ``{#``
  (``@media (…){#body{…}}``). Authors' ``{# … #}`` comments are stripped from the MJML source
  before MRML, and the compiled HTML is parsed with a comment delimiter that cannot occur in it.
* Filters format in the locale of the template file actually used (one environment per
  locale, so the locale is bound, not looked up per call) and in the contact's time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.render.locales import babel_locale
from engine.render.record import Record

# Jinja comment delimiters for compiled HTML/text: NUL never appears in MRML output or in text.
COMPILED_COMMENT_START = "{#\x00"
COMPILED_COMMENT_END = "\x00#}"


class TemplateValueError(ValueError):
    """A filter got a value it cannot format; surfaces as a render error naming the template."""


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TemplateValueError(f"unknown time zone {name!r}") from None


@lru_cache(maxsize=64)
def _babel(locale: str) -> Locale:
    return Locale.parse(babel_locale(locale))


def _as_moment(value: Any) -> date | datetime:
    if isinstance(value, (date, datetime)):
        return value
    if isinstance(value, str):
        try:
            return (
                datetime.fromisoformat(value)
                if "T" in value or " " in value.strip()
                else date.fromisoformat(value)
            )
        except ValueError:
            pass
    raise TemplateValueError(f"expected a date or date-time, got {value!r}")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TemplateValueError(f"date-time {moment.isoformat()} has no time zone")
    return moment


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TemplateValueError(f"expected a number, got {value!r}")
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise TemplateValueError(f"expected a number, got {value!r}") from None


class Formatters:
    """The filters and ``days_until`` bound to one locale and a default zone.

    Babel formatting costs tens of µs per call, and a message formats the same values
    several times (subject, HTML, text part) while a send formats the same few values for
    thousands of recipients, so results are memoised per formatter (bounded LRU caches).
    """

    def __init__(self, locale: str, default_zone: str) -> None:
        self.locale = _babel(locale)
        self.default_zone = default_zone
        self._format_date = lru_cache(maxsize=4096)(self._format_date_uncached)
        self._format_datetime = lru_cache(maxsize=4096)(self._format_datetime_uncached)
        self._format_money = lru_cache(maxsize=4096)(self._format_money_uncached)
        self._format_number = lru_cache(maxsize=4096)(self._format_number_uncached)

    def _format_date_uncached(self, moment: date, format: str) -> str:  # noqa: A002
        return str(format_date(moment, format=format, locale=self.locale))

    def _format_datetime_uncached(self, moment: datetime, format: str, zone: tzinfo) -> str:  # noqa: A002
        return str(format_datetime(moment, format=format, tzinfo=zone, locale=self.locale))

    def _format_money_uncached(self, value: Decimal, currency: str) -> str:
        return str(format_currency(value, currency, locale=self.locale))

    def _format_number_uncached(self, value: Decimal, format: str | None) -> str:  # noqa: A002
        return str(format_decimal(value, format=format, locale=self.locale))

    def zone_of(self, context: Context) -> tzinfo:
        contact = context.get("contact")
        name = getattr(contact, "timezone", None) if contact is not None else None
        return _zone(name or self.default_zone)

    def date(self, context: Context, value: Any, format: str = "long") -> str:  # noqa: A002 — Jinja's name
        if value is None:
            raise TemplateValueError("date filter got none (is the value present for this contact?)")
        moment = _as_moment(value)
        if isinstance(moment, datetime):
            moment = _aware(moment).astimezone(self.zone_of(context)).date()
        return self._format_date(moment, format)

    def datetime(self, context: Context, value: Any, format: str = "medium") -> str:  # noqa: A002
        if value is None:
            raise TemplateValueError("datetime filter got none (is the value present for this contact?)")
        moment = _as_moment(value)
        if not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=self.zone_of(context))
        zone = self.zone_of(context)
        return self._format_datetime(_aware(moment).astimezone(zone), format, zone)

    def money(self, value: Any, currency: str | None = None) -> str:
        if not currency:
            raise TemplateValueError("money needs a currency, e.g. {{ order.total|money(order.currency) }}")
        return self._format_money(_as_decimal(value), str(currency).upper())

    def number(self, value: Any, format: str | None = None) -> str:  # noqa: A002
        return self._format_number(_as_decimal(value), format)

    def days_until(self, context: Context, value: Any) -> int:
        """Whole days from ``now`` to ``value``, both taken as dates in the contact's zone."""
        if value is None:
            raise TemplateValueError("days_until got none")
        zone = self.zone_of(context)
        now = context.get("now")
        if not isinstance(now, datetime):
            raise TemplateValueError("days_until needs `now` in the context")
        today = _aware(now).astimezone(zone).date()
        moment = _as_moment(value)
        target = _aware(moment).astimezone(zone).date() if isinstance(moment, datetime) else moment
        return (target - today).days


def _with_context(method: Callable[..., Any]) -> Callable[..., Any]:
    """Jinja marks context-taking callables with an attribute, which bound methods cannot carry."""

    def call(context: Context, *args: Any, **kwargs: Any) -> Any:
        return method(context, *args, **kwargs)

    call.__name__ = getattr(method, "__name__", "filter")
    return pass_context(call)


class TemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with a fast path for :class:`~engine.render.context.Record` fields.

    A Record's public fields are plain data put there by the engine (never callables or
    objects with internals), so looking one up needs none of the sandbox's per-access
    checks; everything else goes through the full sandbox. This halves attribute cost in
    a typical email, where nearly every lookup is ``contact.x`` / ``shop.y``.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is Record and attribute[:1] != "_":
            try:
                return obj.__dict__[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def make_environment(
    locale: str,
    default_zone: str,
    *,
    html: bool,
    compiled: bool = False,
    extra_filters: dict[str, Callable[..., Any]] | None = None,
) -> TemplateEnvironment:
    """A sandboxed environment formatting in ``locale``.

    ``html`` turns on autoescaping; ``compiled`` switches the comment delimiters for MRML's
    output (see the module docstring). ``keep_trailing_newline`` keeps text parts as written.
    """
    options: dict[str, Any] = {}
    if compiled:
        options = {"comment_start_string": COMPILED_COMMENT_START, "comment_end_string": COMPILED_COMMENT_END}
    env = TemplateEnvironment(
        autoescape=html,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
        **options,
    )
    fmt = Formatters(locale, default_zone)
    env.filters["date"] = _with_context(fmt.date)
    env.filters["datetime"] = _with_context(fmt.datetime)
    env.filters["money"] = fmt.money
    env.filters["number"] = fmt.number
    env.globals["days_until"] = _with_context(fmt.days_until)
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)  # no use in email; fewer objects to probe
    if extra_filters:
        env.filters.update(extra_filters)
    return env


def expression_environment(locale: str, default_zone: str) -> TemplateEnvironment:
    """For campaign EXPRs (``contact.orders_count == 0``): same sandbox, names and filters as templates."""
    return make_environment(locale, default_zone, html=False)
