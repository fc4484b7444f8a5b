"""What each operation in the sandbox may make, checked before it runs (see :mod:`engine.workspace.sandbox`).

Operators (``*``, ``**``, ``+``, ``%``), method calls of built-in values (``'x'.center(n)``,
``sep.join(items)``, ``s.replace(a, b)``), ``str.format`` fields, and the Jinja filters that
take a width or build a list (``join``, ``replace``, ``center``, ``indent``, ``wordwrap``,
``truncate``, ``format``, ``sum``, ``batch``, ``slice``, ``tojson``; ``list``, ``sort``,
``unique`` … take their input within the budgets first; ``map``, ``select`` … count a step
per item they yield). The estimates are upper bounds computed from the inputs, so the
memory is never taken when the answer would be no.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2.filters import make_attrgetter
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter

from engine.workspace.render_budget import (
    MAX_INT_BITS,
    MAX_INT_DIGITS,
    MAX_STRING,
    BudgetExceeded,
    check_items,
    check_text,
    counted,
    is_int,
    take,
    text_size,
)


def _check_bits(bits: int, construct: str) -> None:
    if bits > MAX_INT_BITS:
        digits = int(bits * math.log10(2)) + 1
        raise BudgetExceeded(
            f"the number would have about {digits:,} digits; at most {MAX_INT_DIGITS:,} are allowed",
            construct,
        )


# --- operators -----------------------------------------------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _percent_size(template: str, args: Any, construct: str) -> int:
    """About how long ``template % args`` is, without making it."""
    values = args if isinstance(args, tuple) else (args,)
    stars = False
    size = len(template) + sum(text_size(value) for value in values)
    for width, precision in _PERCENT_SPEC.findall(template):
        for number in (width, precision):
            if number == "*":
                stars = True
            elif number:
                size += int(number)
    if stars and any(is_int(value) and abs(value) > MAX_STRING for value in values):
        raise BudgetExceeded(f"a %-format width over {MAX_STRING:,}", construct)
    if isinstance(args, Mapping):
        size += text_size(args)
    return size


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` before it runs when its result would pass a budget."""
    construct = re.escape(operator)
    if operator == "*":
        if is_int(left) and not is_int(right):
            left, right = right, left
        if is_int(right) and isinstance(left, str | bytes):
            check_text(len(left) * max(right, 0), "a string made with *", construct)
        elif is_int(right) and isinstance(left, list | tuple):
            times = max(right, 0)
            check_items(len(left) * times, "a list made with *", construct)
            check_text(text_size(left) * times, "the text in a list made with *", construct)
        elif is_int(left) and is_int(right):
            _check_bits(abs(left).bit_length() + abs(right).bit_length(), construct)
    elif operator == "**":
        if is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
            _check_bits(int(right * math.log2(abs(left))) + 1, construct)
    elif operator == "+":
        if isinstance(left, str | bytes) and isinstance(right, str | bytes):
            check_text(len(left) + len(right), "a string made with +", construct)
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            check_items(len(left) + len(right), "a list made with +", construct)
            check_text(text_size(left) + text_size(right), "the text in a list made with +", construct)
        elif is_int(left) and is_int(right):
            _check_bits(max(abs(left).bit_length(), abs(right).bit_length()) + 1, construct)
    elif operator == "%" and isinstance(left, str):
        check_text(_percent_size(left, right, construct), "a string made with %", construct)


# --- calls ---------------------------------------------------------------------------------------

_SIZED_OWNERS = (str, bytes, int, list, tuple, dict)


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a method call of a built-in value whose result would pass a budget; the arguments to use."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, _SIZED_OWNERS):
        return args
    name = str(getattr(obj, "__name__", "method"))
    construct = rf"\.{re.escape(name)}\b"
    for value in (*args, *kwargs.values()):
        if is_int(value) and abs(value) > MAX_STRING:
            raise BudgetExceeded(f"{name}() with {value:,}: at most {MAX_STRING:,} here", construct)
    if isinstance(owner, str | bytes):
        if name == "replace" and len(args) >= 2:
            check_text(
                _replaced_size(owner, args[0], args[1], args[2] if len(args) > 2 else None),
                "replace",
                construct,
            )
        elif name == "join" and args:
            items = take(args[0], "join", construct)
            size = sum(text_size(item) for item in items) + len(owner) * max(len(items) - 1, 0)
            check_text(size, "a joined string", construct)
            return (items, *args[1:])
        elif name == "expandtabs":
            tab = args[0] if args and is_int(args[0]) else int(kwargs.get("tabsize", 8) or 8)
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            check_text(len(owner) + tabs * tab, name, construct)
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((text_size(value) for value in args[0].values()), default=1)
            check_text(len(owner) * max(longest, 1), name, construct)
    return args


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    if (
        not isinstance(text, str | bytes)
        or not isinstance(old, str | bytes)
        or not isinstance(new, str | bytes)
    ):
        return 0
    found = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]
    if is_int(count) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


class _BoundedFormatting:
    """``str.format`` fields checked one by one: no width over the budget, no result over it in all.

    ``total`` is reset by the caller before each ``vformat``.
    """

    total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in re.findall(r"\d+", format_spec):
            if len(number) > 7 or int(number) > MAX_STRING:
                raise BudgetExceeded(f"a format width of {number}", r"\.format\b|\bformat\b")
        result = super().format_field(value, format_spec)  # type: ignore[misc]
        self.total += len(result)
        check_text(self.total, "a formatted string", r"\.format\b|\bformat\b")
        return result


class Formatter(_BoundedFormatting, SandboxedFormatter):
    pass


class EscapeFormatter(_BoundedFormatting, SandboxedEscapeFormatter):
    pass


# --- filters -------------------------------------------------------------------------------------


def _value_index(function: Callable[..., Any]) -> int:
    """Where a Jinja filter takes its value: after the context/environment it asks for, if any."""
    return 1 if getattr(function, "jinja_pass_arg", None) is not None else 0


def _guarded(
    name: str, function: Callable[..., Any], check: Callable[[list[Any], dict[str, Any]], None]
) -> Callable[..., Any]:
    """``function`` with ``check`` run on its arguments first (it may replace them, e.g. take an iterable)."""

    @wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        arguments = list(args)
        check(arguments, kwargs)
        return function(*arguments, **kwargs)

    return guarded


def _consumer(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that reads a whole iterable: the iterable is taken within the budgets first."""
    index = _value_index(function)
    construct = rf"\b{re.escape(name)}\b"

    def check(args: list[Any], kwargs: dict[str, Any]) -> None:
        if len(args) > index:
            args[index] = take(args[index], name, construct)

    return _guarded(name, function, check)


def _producer(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that yields lazily (``map``, ``select`` …): each item it yields is a step."""
    construct = rf"\b{re.escape(name)}\b"

    @wraps(function)
    def producing(*args: Any, **kwargs: Any) -> Any:
        return counted(function(*args, **kwargs), construct)

    return producing


def _at(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    """A filter's argument by position or by keyword (positions count the context/environment too)."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def _width(value: Any, name: str) -> int:
    """A size argument (``center(width)``, ``batch(linecount)``), refused past the string budget."""
    if not is_int(value):
        return 0
    if abs(value) > MAX_STRING:
        raise BudgetExceeded(f"{name} with {value:,}: at most {MAX_STRING:,}", rf"\b{name}\b")
    return max(int(value), 0)


def _check_join(args: list[Any], kwargs: dict[str, Any]) -> None:
    items = take(args[1], "join", r"\bjoin\b")
    attribute = _at(args, kwargs, 3, "attribute", None)
    if attribute is not None:  # measure what is joined: the attribute of each item, taken here once
        getter = make_attrgetter(args[0].environment, attribute)
        items = [getter(item) for item in items]
        kwargs.pop("attribute", None)
        del args[3:]
    args[1] = items
    separator = _at(args, kwargs, 2, "d", "")
    size = sum(text_size(item) for item in items) + text_size(separator) * max(len(items) - 1, 0)
    check_text(size, "a joined string", r"\bjoin\b")


def _check_replace(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = args[1] if len(args) > 1 else ""
    old, new = _at(args, kwargs, 2, "old", ""), _at(args, kwargs, 3, "new", "")
    size = _replaced_size(str(text), str(old), str(new), _at(args, kwargs, 4, "count", None))
    check_text(size, "replace", r"\breplace\b")


def _check_center(args: list[Any], kwargs: dict[str, Any]) -> None:
    _width(_at(args, kwargs, 1, "width", 80), "center")


def _check_indent(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = str(args[0]) if args else ""
    width = _at(args, kwargs, 1, "width", 4)
    per_line = _width(width, "indent") if is_int(width) else text_size(width)
    check_text(len(text) + (text.count("\n") + 1) * per_line, "indent", r"\bindent\b")


def _check_wordwrap(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = str(args[1]) if len(args) > 1 else ""
    width = _width(_at(args, kwargs, 2, "width", 79), "wordwrap")
    wrap = _at(args, kwargs, 4, "wrapstring", None) or "\n"
    check_text(len(text) + (len(text) // max(width, 1) + 1) * text_size(wrap), "wordwrap", r"\bwordwrap\b")


def _check_truncate(args: list[Any], kwargs: dict[str, Any]) -> None:
    _width(_at(args, kwargs, 2, "length", 255), "truncate")


def _check_format(args: list[Any], kwargs: dict[str, Any]) -> None:
    template = str(args[0]) if args else ""
    values = tuple(args[1:]) if len(args) > 1 else kwargs
    check_text(_percent_size(template, values, r"\bformat\b"), "a formatted string", r"\bformat\b")


def _check_sum(args: list[Any], kwargs: dict[str, Any]) -> None:
    items = args[1] = take(args[1], "sum", r"\bsum\b")
    if isinstance(_at(args, kwargs, 3, "start", 0), list | tuple):
        count = sum(len(item) for item in items if isinstance(item, list | tuple))
        check_items(count, "a list made with sum", r"\bsum\b")


def _check_batch(args: list[Any], kwargs: dict[str, Any]) -> None:
    args[0] = take(args[0], "batch", r"\bbatch\b")
    check_items(_width(_at(args, kwargs, 1, "linecount", 1), "batch"), "a batch", r"\bbatch\b")


def _check_slice(args: list[Any], kwargs: dict[str, Any]) -> None:
    args[1] = take(args[1], "slice", r"\bslice\b")
    check_items(_width(_at(args, kwargs, 2, "slices", 1), "slice"), "slices", r"\bslice\b")


def _check_tojson(args: list[Any], kwargs: dict[str, Any]) -> None:
    indent = _width(_at(args, kwargs, 2, "indent", None), "tojson")
    check_text(text_size(args[1] if len(args) > 1 else None) * (indent + 1), "tojson", r"\btojson\b")


def _filter_checks() -> dict[str, Callable[..., Any]]:
    f = jinja_filters
    wrapped: dict[str, Callable[..., Any]] = {
        "join": _guarded("join", f.do_join, _check_join),
        "replace": _guarded("replace", f.do_replace, _check_replace),
        "center": _guarded("center", f.do_center, _check_center),
        "indent": _guarded("indent", f.do_indent, _check_indent),
        "wordwrap": _guarded("wordwrap", f.do_wordwrap, _check_wordwrap),
        "truncate": _guarded("truncate", f.do_truncate, _check_truncate),
        "format": _guarded("format", f.do_format, _check_format),
        "sum": _guarded("sum", f.do_sum, _check_sum),
        "batch": _guarded("batch", f.do_batch, _check_batch),
        "slice": _guarded("slice", f.do_slice, _check_slice),
        "tojson": _guarded("tojson", f.do_tojson, _check_tojson),
    }
    consumers = {"list": f.do_list, "sort": f.do_sort, "unique": f.do_unique, "reverse": f.do_reverse}
    consumers |= {"dictsort": f.do_dictsort, "groupby": f.do_groupby, "min": f.do_min, "max": f.do_max}
    for name, function in consumers.items():
        wrapped[name] = _consumer(name, function)
    producers = {"map": f.do_map, "select": f.do_select, "reject": f.do_reject}
    producers |= {"selectattr": f.do_selectattr, "rejectattr": f.do_rejectattr}
    for name, function in producers.items():
        wrapped[name] = _producer(name, function)
    return wrapped


BOUNDED_FILTERS = _filter_checks()
