"""The Jinja2 environments every template (and every campaign EXPR) runs in.

Why these choices:

* Budgets (:mod:`engine.workspace.sandbox`): a template cannot loop, recurse or allocate without
  bound; every loop's iterable is counted (``_count_loops``), ``~`` is measured, and buffers
  are joined by the budget's ``concat`` when the template has loops or macros.
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
  Money follows CLDR through Babel, except where Babel lacks what a native reader expects:
  Romanian prices in RON read "lei" (CLDR's narrow symbol, which Babel does not expose), not
  "RON". ``plural`` picks a phrase by CLDR's plural rules ("20 de zile" but "19 zile").
  ``hours`` shows the shop's support hours (:mod:`engine.opening_hours`) with CLDR's day
  names and time ranges; ``linebreaks`` keeps the line breaks of untrusted text (a gift
  card buyer's note) as ``<br>`` in HTML, escaping everything else, and as lines in text.
* Per-message cost: a send renders the same templates tens of thousands of times, so the
  filters memoise whole calls, the engine's own ``days_until`` skips the sandbox's call
  checks, and the generated code reads Record fields and escapes output without the
  per-value method calls Jinja makes (:class:`TemplateEnvironment`, ``_OutputCodeGenerator``).
  Each is exact: the sandbox still sees every other object, attribute and call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import markupsafe
from babel import Locale
from babel.dates import format_date, format_datetime, format_interval, get_day_names, get_timezone_name
from babel.numbers import format_currency, format_decimal, get_currency_symbol
from jinja2 import StrictUndefined, nodes, pass_context, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.opening_hours import InvalidHours, parse_hours
from engine.render.locales import babel_locale
from engine.render.record import Record
from engine.workspace.render_budget import counted, loop_construct
from engine.workspace.sandbox import BoundedSandbox

_Finalize = CodeGenerator._FinalizeInfo

# Currency symbols a native reader expects where Babel's CLDR data gives the ISO code: by language.
LOCAL_CURRENCY_SYMBOLS: dict[str, dict[str, str]] = {"ro": {"RON": "lei"}}

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
    thousands of recipients, so results are memoised per formatter. The memo key is the
    whole input (value and its type, format, the contact's zone name, ``now`` for
    ``days_until``), so a hit skips the zone lookup and conversions too: a repeated
    ``{{ cutoff.order_by|datetime }}`` costs one dict lookup. Memos are bounded and start
    over when full; values that cannot be hashed are simply formatted every time.
    """

    def __init__(self, locale: str, default_zone: str, memo_size: int = 4096) -> None:
        self.locale = _babel(locale)
        self.default_zone = default_zone
        self._memo_size = memo_size
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._format_date = lru_cache(maxsize=memo_size)(self._format_date_uncached)
        self._format_datetime = lru_cache(maxsize=memo_size)(self._format_datetime_uncached)
        self._format_money = lru_cache(maxsize=memo_size)(self._format_money_uncached)
        self._format_number = lru_cache(maxsize=memo_size)(self._format_number_uncached)
        self._format_hours = lru_cache(maxsize=64)(self._format_hours_uncached)
        self._local_symbols = LOCAL_CURRENCY_SYMBOLS.get(self.locale.language, {})
        # The callables templates see, made once so that every environment of this locale and
        # zone shares them (and their memo), and the sandbox can recognise them by identity.
        self.filters: dict[str, Callable[..., Any]] = {
            "date": _with_context(self.date),
            "datetime": _with_context(self.datetime),
            "money": self.money,
            "number": self.number,
            "hours": self.hours,
            "plural": self.plural,
        }
        self.days_until_function = _with_context(self.days_until)

    def _format_date_uncached(self, moment: date, format: str) -> str:  # noqa: A002
        return str(format_date(moment, format=format, locale=self.locale))

    def _format_datetime_uncached(self, moment: datetime, format: str, zone: tzinfo) -> str:  # noqa: A002
        return str(format_datetime(moment, format=format, tzinfo=zone, locale=self.locale))

    def _format_money_uncached(self, value: Decimal, currency: str) -> str:
        text = str(format_currency(value, currency, locale=self.locale))
        local = self._local_symbols.get(currency)
        if local is not None:
            text = text.replace(str(get_currency_symbol(currency, locale=self.locale)), local)
        return text

    def _format_hours_uncached(self, value: str) -> str:
        try:
            hours = parse_hours(value)
        except InvalidHours as exc:
            raise TemplateValueError(str(exc)) from None
        days = get_day_names("wide", context="stand-alone", locale=self.locale)
        skeleton = "hm" if "h" in self.locale.time_formats["short"].pattern else "Hm"
        parts = []
        for group in hours.groups:
            span = days[group.first]
            if group.last != group.first:
                span += f"–{days[group.last]}"
            times = format_interval(group.opens, group.closes, skeleton, locale=self.locale)
            parts.append(f"{span}, {times}")
        zone = get_timezone_name(hours.zone, "long", locale=self.locale, zone_variant="generic")
        return f"{'; '.join(parts)} ({zone})"

    def _format_number_uncached(self, value: Decimal, format: str | None) -> str:  # noqa: A002
        return str(format_decimal(value, format=format, locale=self.locale))

    def zone_name(self, context: Context) -> str:
        """The contact's zone name (or the default), read straight from the render's variables."""
        contact = context.vars["contact"] if "contact" in context.vars else context.parent.get("contact")
        name = getattr(contact, "timezone", None) if contact is not None else None
        return str(name or self.default_zone)

    def zone_of(self, context: Context) -> tzinfo:
        return _zone(self.zone_name(context))

    def _remember(self, key: tuple[Any, ...], result: Any) -> Any:
        if len(self._memo) >= self._memo_size:
            self._memo.clear()
        self._memo[key] = result
        return result

    def date(self, context: Context, value: Any, format: str = "long") -> str:  # noqa: A002 — Jinja's name
        zone = self.zone_name(context)
        key = ("date", type(value), value, format, zone)
        try:
            hit = self._memo.get(key)
        except TypeError:  # unhashable: no memo
            return self._date(value, format, zone)
        if hit is None:
            hit = self._remember(key, self._date(value, format, zone))
        return hit  # type: ignore[no-any-return]

    def _date(self, value: Any, format: str, zone: str) -> str:  # noqa: A002
        if value is None:
            raise TemplateValueError("date filter got none (is the value present for this contact?)")
        moment = _as_moment(value)
        if isinstance(moment, datetime):
            moment = _aware(moment).astimezone(_zone(zone)).date()
        return self._format_date(moment, format)

    def datetime(self, context: Context, value: Any, format: str = "medium") -> str:  # noqa: A002
        zone = self.zone_name(context)
        key = ("datetime", type(value), value, format, zone)
        try:
            hit = self._memo.get(key)
        except TypeError:
            return self._datetime(value, format, zone)
        if hit is None:
            hit = self._remember(key, self._datetime(value, format, zone))
        return hit  # type: ignore[no-any-return]

    def datetime_in(self, value: Any, format: str, zone_name: str) -> str:  # noqa: A002
        """What ``{{ value|datetime(format) }}`` shows to a reader in ``zone_name``, outside a template
        (the public app's cutoff banner says the dates exactly as the emails do)."""
        key = ("datetime", type(value), value, format, zone_name)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._remember(key, self._datetime(value, format, zone_name))
        return hit  # type: ignore[no-any-return]

    def _datetime(self, value: Any, format: str, zone_name: str) -> str:  # noqa: A002
        if value is None:
            raise TemplateValueError("datetime filter got none (is the value present for this contact?)")
        zone = _zone(zone_name)
        moment = _as_moment(value)
        if not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=zone)
        return self._format_datetime(_aware(moment).astimezone(zone), format, zone)

    def money(self, value: Any, currency: str | None = None) -> str:
        if not currency:
            raise TemplateValueError("money needs a currency, e.g. {{ order.total|money(order.currency) }}")
        return self._format_money(_as_decimal(value), str(currency).upper())

    def number(self, value: Any, format: str | None = None) -> str:  # noqa: A002
        return self._format_number(_as_decimal(value), format)

    def plural(self, value: Any, **forms: str) -> str:
        """The form of ``value``'s CLDR plural category, ``#`` replaced by the number in this locale.

        ``{{ left|plural(one='o zi', few='# zile', other='# de zile') }}``: Romanian says "20 de
        zile" but "19 zile", English "1 day" but "2 days"; the categories come from CLDR
        (``one``, ``two``, ``few``, ``many``, ``other``), and ``other`` is required.
        """
        if "other" not in forms:
            raise TemplateValueError(
                "plural needs at least other='…' (and one='…' where the language has it)"
            )
        unknown = set(forms) - {"zero", "one", "two", "few", "many", "other"}
        if unknown:
            raise TemplateValueError(
                f"plural: unknown category {sorted(unknown)[0]!r} (zero, one, two, few, many, other)"
            )
        number = _as_decimal(value)
        category = self.locale.plural_form(number)
        return forms.get(category, forms["other"]).replace("#", self._format_number(number, None))

    def hours(self, value: Any) -> str:
        """``Mon-Fri 09:00-17:00 Europe/Tallinn`` → "luni–vineri, 09:00–17:00 (Ora Europei de Est)"."""
        if not value:
            raise TemplateValueError("hours got none (guard it with {% if shop.support.hours %})")
        return self._format_hours(str(value))

    def days_until(self, context: Context, value: Any) -> int:
        """Whole days from ``now`` to ``value``, both taken as dates in the contact's zone."""
        zone = self.zone_name(context)
        now = context.vars["now"] if "now" in context.vars else context.parent.get("now")
        key = ("days_until", type(value), value, type(now), now, zone)
        try:
            hit = self._memo.get(key)
        except TypeError:
            return self._days_until(value, now, zone)
        if hit is None:
            hit = self._remember(key, self._days_until(value, now, zone))
        return hit  # type: ignore[no-any-return]

    def _days_until(self, value: Any, now: Any, zone_name: str) -> int:
        if value is None:
            raise TemplateValueError("days_until got none")
        zone = _zone(zone_name)
        if not isinstance(now, datetime):
            raise TemplateValueError("days_until needs `now` in the context")
        today = _aware(now).astimezone(zone).date()
        moment = _as_moment(value)
        target = _aware(moment).astimezone(zone).date() if isinstance(moment, datetime) else moment
        return (target - today).days


@lru_cache(maxsize=64)
def formatters(locale: str, default_zone: str) -> Formatters:
    """One :class:`Formatters` per locale and default zone, shared by all environments."""
    return Formatters(locale, default_zone)


@pass_eval_context
def linebreaks(eval_ctx: EvalContext, value: Any) -> str | markupsafe.Markup:
    """Untrusted multi-line text: escaped with ``<br />`` between lines in HTML, as written in text.

    Decided by the evaluation context, not the environment: the one-render template runs its
    HTML part inside ``{% autoescape true %}`` of the text environment.
    """
    if value is None:
        return ""
    lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not eval_ctx.autoescape:
        return "\n".join(lines)
    return markupsafe.Markup("<br />\n").join(markupsafe.escape(line) for line in lines)


def _with_context(method: Callable[..., Any]) -> Callable[..., Any]:
    """Jinja marks context-taking callables with an attribute, which bound methods cannot carry.

    A ``partial`` can carry it and calls the method without a Python-level wrapper frame.
    """
    call = partial(method)
    call.__name__ = getattr(method, "__name__", "filter")  # type: ignore[attr-defined]
    return pass_context(call)


def _plain_escaper() -> Callable[[str], str]:
    """MarkupSafe's C escaper for ``str`` (what ``escape`` runs before wrapping in ``Markup``).

    It is not public API, so it is used only when present and agreeing with ``escape`` on
    probes covering every escaped character; otherwise ``str(escape(…))``, same result.
    """
    inner = getattr(markupsafe, "_escape_inner", None)
    probes = ("", "plain", "<a href=\"x\">'&'</a>", "Ștefan & Jüri > 😀", "\x00<")
    if callable(inner) and all(inner(p) == str(markupsafe.escape(p)) for p in probes):
        return inner  # type: ignore[no-any-return]
    return lambda text: str(markupsafe.escape(text))


_escape_str = _plain_escaper()


def escape_output(value: Any) -> str:
    """``markupsafe.escape`` for a value the template writes out, without the ``Markup`` wrapper.

    Jinja escapes every ``{{ … }}`` of an HTML template with ``escape``, which wraps each
    result in ``Markup`` (a Python-level constructor) only for the render to join it into
    the page: with ~20 outputs per email, the largest single cost after the generated code
    itself in a profile. The characters are the same; the wrapper is not needed where the
    value is only written out (see ``_OutputCodeGenerator``).
    """
    if type(value) is str:
        return _escape_str(value)
    return markupsafe.escape(value)


# Filters whose result depends only on their arguments (and, for the dates, on the contact's zone
# and ``now``, which do not change during a render) — and not on the autoescape setting.
PURE_FILTERS = frozenset(
    {"date", "datetime", "money", "number", "hours", "label", "plural"}
    | {"upper", "lower", "title", "capitalize", "trim"}
    | {"default", "d", "length", "count", "round", "int", "float", "abs"}
)
# Constructs that compile into functions of their own or change names in ways the plan does not follow.
_NO_MEMO = (
    nodes.Block,
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Macro,
    nodes.CallBlock,
    nodes.NSRef,
)
_SPECIAL_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})


def _pure(node: nodes.Node, assigned: frozenset[str]) -> bool:
    """Does ``node`` have the same value wherever it is evaluated during one render?

    True for context names the template never assigns, constants, attribute and constant-key
    lookups on those, allow-listed filters of those, and ``and``/``or``/``not``/``if-else``
    over them. Anything else (calls, arithmetic, names set by the template) is not memoised.
    """
    if isinstance(node, nodes.Name):
        return node.ctx == "load" and node.name not in assigned and node.name not in _SPECIAL_NAMES
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, nodes.Getattr):
        return not node.attr.startswith("_") and _pure(node.node, assigned)
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const) and _pure(node.node, assigned)
    if isinstance(node, nodes.Filter):
        return (
            node.name in PURE_FILTERS
            and node.node is not None
            and node.dyn_args is None
            and node.dyn_kwargs is None
            and _pure(node.node, assigned)
            and all(_pure(arg, assigned) for arg in node.args)
            and all(_pure(kwarg.value, assigned) for kwarg in node.kwargs)
        )
    if isinstance(node, nodes.And | nodes.Or):
        return _pure(node.left, assigned) and _pure(node.right, assigned)
    if isinstance(node, nodes.Not):
        return _pure(node.node, assigned)
    if isinstance(node, nodes.CondExpr):
        return (
            node.expr2 is not None
            and _pure(node.test, assigned)
            and _pure(node.expr1, assigned)
            and _pure(node.expr2, assigned)
        )
    return False


def repeated_outputs(template: nodes.Template) -> list[str]:
    """Keys (``repr``) of pure ``{{ … }}`` expressions written out more than once outside loops."""
    if template.find(_NO_MEMO) is not None:  # type: ignore[arg-type]
        return []
    assigned = frozenset(
        name.name for name in template.find_all(nodes.Name) if name.ctx in ("store", "param")
    )
    counts: Counter[str] = Counter()

    def walk(node: nodes.Node) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.For):
                continue  # per-iteration values: never memoised
            if isinstance(child, nodes.Output):
                for item in child.nodes:
                    if not isinstance(item, nodes.TemplateData) and _pure(item, assigned):
                        counts[repr(item)] += 1
            walk(child)

    walk(template)
    return [key for key, count in counts.items() if count > 1]


# The filter the code generator puts around every loop's iterable (see ``_count_loops``).
COUNTED_FILTER = "tidings_counted"


@pass_context
def _counted_filter(_context: Context, iterable: Iterable[Any], construct: str) -> Iterable[Any]:
    # pass_context: Jinja never folds it at compile time, so constant lists are counted too.
    return counted(iterable, construct)


def _count_loops(template: nodes.Template, environment: Any) -> None:
    """Wrap every loop's iterable in :data:`COUNTED_FILTER`: each item it draws is a step of the budget.

    The iterable is wrapped, not the body, so a loop filter (``for x in xs if …``) counts the
    items it skips as well; a recursive loop's deeper levels are counted where ``loop(…)`` is
    called (``BoundedSandbox.call``). One filter call per loop, not per item.
    """
    for loop in list(template.find_all(nodes.For)):
        target = loop.target
        names = [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))
        targets = [name.name for name in names]
        wrapped = nodes.Filter(
            loop.iter,
            COUNTED_FILTER,
            [nodes.Const(loop_construct(targets))],
            [],
            None,
            None,
            lineno=loop.iter.lineno,
        )
        wrapped.set_environment(environment)
        loop.iter = wrapped


class _OutputCodeGenerator(CodeGenerator):
    """Jinja's code generator with two per-message costs taken out of the generated code.

    Output: ``{{ … }}`` in autoescaped HTML goes through :func:`escape_output`. Output
    expressions are the only place Jinja's generated code calls ``escape``; their results
    are yielded into the page or collected in a buffer that Jinja joins and wraps in
    ``Markup`` itself (filter and set blocks, macros, ``caller``), so plain ``str`` chunks
    render identically. Templates whose escaping is decided at run time (volatile
    ``autoescape`` blocks) and non-escaped output keep Jinja's own code.

    Attributes: ``contact.first_name`` reads a :class:`Record` field inline, without the
    method call into :meth:`TemplateEnvironment.getattr` (whose fast path it repeats, for
    public names only); any other object, a missing field, and every ``_name`` go through
    ``environment.getattr`` and the full sandbox as before. About 40 lookups per email.

    Repeats: an email writes the same values several times (``shop.url`` in every link,
    the deadline in the subject, the HTML and the text part). A ``{{ … }}`` expression that
    is written more than once, outside loops, and whose value cannot change during the
    render (:func:`_pure`) is evaluated once per render and kept in a local variable; later
    occurrences reuse the value, and each still escapes (or not) as its place requires. An
    occurrence in a branch the render did not take simply evaluates it there.
    """

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        self._loop_depth = 0
        self._memo = {key: self.temporary_identifier() for key in repeated_outputs(node)}
        # Only loops and macros can write a buffer's parts many times over; without them every
        # buffer ({% filter %}, {% set %} blocks) holds the template's own text and values written
        # once, and is joined as Jinja joins it, without the budget's measuring.
        self._multiplies = node.find((nodes.For, nodes.Macro, nodes.CallBlock)) is not None  # type: ignore[arg-type]
        _count_loops(node, self.environment)
        super().visit_Template(node, frame)

    def write_commons(self) -> None:
        super().write_commons()
        # Locals rather than an attribute lookup on ``environment`` at every use.
        self.writeline("tidings_escape = environment.escape_output")
        self.writeline("tidings_record = environment.record_type")
        if not self._multiplies:
            self.writeline("concat = environment.plain_concat")
        if self._memo:
            self.writeline(" = ".join(self._memo.values()) + " = missing")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_depth += 1
        try:
            super().visit_For(node, frame)
        finally:
            self._loop_depth -= 1

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """``a ~ b``: the joined string is checked against the string budget."""
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(", '~')")

    def _memo_name(self, node: nodes.Expr) -> str | None:
        return self._memo.get(repr(node)) if self._memo and not self._loop_depth else None

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        if self.environment.is_async or node.attr.startswith("_"):
            super().visit_Getattr(node, frame)
            return
        obj, value, attr = self.temporary_identifier(), self.temporary_identifier(), repr(node.attr)
        self.write(f"({value} if type({obj} := ")
        self.visit(node.node, frame)
        self.write(
            f") is tidings_record and ({value} := {obj}.__dict__.get({attr}, missing))"
            f" is not missing else environment.getattr({obj}, {attr}))"
        )

    def _output_child_pre(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        if frame.eval_ctx.autoescape and not frame.eval_ctx.volatile:
            self.write("tidings_escape(")
            if finalize.src is not None:
                self.write(finalize.src)
        else:
            super()._output_child_pre(node, frame, finalize)
        memo = self._memo_name(node)
        if memo is not None:
            self.write(f"({memo} if {memo} is not missing else ({memo} := ")

    def _output_child_post(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        if self._memo_name(node) is not None:
            self.write("))")
        super()._output_child_post(node, frame, finalize)


class TemplateEnvironment(BoundedSandbox, ImmutableSandboxedEnvironment):
    """The bounded sandbox with a fast path for :class:`~engine.render.context.Record` fields.

    Budgets (loop iterations and calls, time, string, list and integer sizes) are
    :class:`~engine.workspace.sandbox.BoundedSandbox`'s; the code generator adds the loop
    counting and the ``~`` check (:class:`_OutputCodeGenerator`).

    A Record's public fields are plain data put there by the engine (never callables or
    objects with internals), so looking one up needs none of the sandbox's per-access
    checks; everything else goes through the full sandbox. This halves attribute cost in
    a typical email, where nearly every lookup is ``contact.x`` / ``shop.y``.

    Calls get the same treatment for the engine's own functions (``days_until``): the
    sandbox would only confirm they are safe to call and hand them the context, so a call
    with plain positional arguments goes straight to them. The check is by identity against
    objects this environment holds, so no other object can pass for them; anything else,
    and any call with keyword arguments (Jinja passes loop and block variables that way),
    takes the sandbox's path.
    """

    code_generator_class = _OutputCodeGenerator
    escape_output = staticmethod(escape_output)
    record_type = Record
    plain_concat = staticmethod("".join)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trusted_calls: dict[int, Callable[..., Any]] = {}

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict instead of Jinja's ``ChainMap``.

        Every render copies the key set of its template's globals (``set(globals)`` in
        ``Context``), which for a ``ChainMap`` is a Python-level merge of both maps, a few
        µs per message. The environment's globals are final once :func:`make_environment`
        returns, so a snapshot holds the same names and values.
        """
        return {**self.globals, **(d or {})}

    def trust_call(self, function: Callable[..., Any]) -> None:
        """Mark one of the engine's context-taking functions as callable without the sandbox's checks."""
        self.trusted_calls[id(function)] = function

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        trusted = __self.trusted_calls.get(id(__obj))
        if trusted is not None and trusted is __obj and not kwargs:
            return trusted(__context, *args)
        return super().call(__context, __obj, *args, **kwargs)

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
    fmt = formatters(locale, default_zone)
    env.filters.update(fmt.filters)
    env.filters[COUNTED_FILTER] = _counted_filter
    env.filters["linebreaks"] = linebreaks
    env.globals["days_until"] = fmt.days_until_function
    env.trust_call(fmt.days_until_function)
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)  # no use in email; fewer objects to probe
    if extra_filters:
        env.filters.update(extra_filters)
    return env


def expression_environment(locale: str, default_zone: str) -> TemplateEnvironment:
    """For campaign EXPRs (``contact.orders_count == 0``): same sandbox, names and filters as templates."""
    return make_environment(locale, default_zone, html=False)
