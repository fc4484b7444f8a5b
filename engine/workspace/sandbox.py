"""The sandbox every piece of marketer-written Jinja runs in (templates and campaign EXPRs), with budgets.

Jinja's ``SandboxedEnvironment`` refuses unsafe attributes and calls, but not work: two nested
``range(100000)`` loops run for hours, ``'x' * 10**9`` takes a gigabyte, ``9**9**9`` never ends,
and ``(10**10000)|string`` fails deep in Python with no line. :class:`BoundedSandbox` is that
sandbox with budgets (limits and counters in :mod:`engine.workspace.render_budget`, the rule
for each operation in :mod:`engine.workspace.sandbox_sizes`); exceeding one raises
``BudgetExceeded`` (a Jinja ``SecurityError``) that says what and how much, and the renderer
reports it at the template's line.

What is bounded, and how:

* **steps** — every loop iteration (nested loops multiply, so they are counted together), every
  item a ``map``/``select``/``reject`` produces and every call (macros, methods) counts one
  step: at most :data:`MAX_STEPS` per render;
* **time** — :class:`Budget` ``.seconds`` of wall time per render (2 s by default), read every
  256 steps: no loop or chain of calls outlasts it. A single operation cannot be interrupted,
  so each is bounded by the size budgets instead;
* **strings** — no string an operation makes (``*``, ``+``, ``~``, ``%``, ``str.format``,
  ``join``, ``replace``, ``center``, ``indent``, ``wordwrap``, ``str`` methods) and no output of
  a render, macro, block or ``{% set %}``/``{% filter %}`` block may pass :data:`MAX_STRING`
  characters; each is checked *before* the memory is taken wherever the size can be known
  in advance, and right after otherwise (inputs are bounded, so "after" is a few MB at most);
* **lists** — :data:`MAX_ITEMS` items (``*``, ``+``, ``range`` — Jinja's own ``MAX_RANGE`` —,
  and every filter that builds a list: ``list``, ``sort``, ``unique``, ``batch``, ``slice`` …),
  holding at most :data:`MAX_STRING` characters of text between them, so that sorting or
  joining them stays cheap too;
* **integers** — :data:`MAX_INT_DIGITS` digits, Python's own limit for printing one, for the
  results of ``*``, ``**`` and ``+``: ``9**9**9`` is refused before it is computed;
* **arguments** — an integer argument over :data:`MAX_STRING` to a ``str``/``bytes``/``int``
  method or to a width-taking filter (``'x'.center(10**9)``, ``(1).to_bytes(10**9)``,
  ``indent(10**9)``) is refused before the call.

Steps and time need a render to count against: the renderer opens one per message (see
:mod:`engine.workspace.render_budget`). Outside one (a campaign EXPR, Jinja folding constants
at compile time), only the size budgets apply, and they apply everywhere.

Measured cost (``bench/render.py`` on the shipped marketing templates, runs alternating with
the code before the budgets on one machine): 1.34–1.36× the plain-Jinja floor before, 1.38–1.41×
after, 3–4 % per message — the budget's context variable and the output check; a template
without loops, macros or arithmetic pays nothing else, one with loops ~0.1 µs per iteration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import update_wrapper
from types import BuiltinMethodType, MethodType
from typing import Any

from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from engine.workspace.render_budget import BudgetExceeded, bounded_concat, counted, sized, use
from engine.workspace.sandbox_sizes import (
    BOUNDED_FILTERS,
    EscapeFormatter,
    Formatter,
    check_binop,
    check_call,
)

_METHODS = (MethodType, BuiltinMethodType)


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox with the budgets of this module (see there for what is bounded and how)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(bounded_concat)  # type: ignore[assignment]
    counted = staticmethod(counted)
    sized = staticmethod(sized)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(BOUNDED_FILTERS)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """A call from template code: one step; a recursive loop's next level counted; sizes checked."""
        current = use()
        if current is not None:
            try:
                current.step(None)
            except BudgetExceeded as exc:
                exc.construct = _call_construct(__obj)
                raise
        if type(__obj) is LoopContext and args:
            args = (counted(args[0], r"\bfor\b"), *args[1:])  # a recursive loop's next level
        args = check_call(__obj, args, kwargs)
        try:
            return super().call(__context, __obj, *args, **kwargs)
        except RecursionError:
            # Caught by the innermost call, so the error names the macro that never stops.
            raise BudgetExceeded(
                "the template calls itself without end (a macro or recursive loop that never stops)",
                _call_construct(__obj),
            ) from None

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed ``str.format`` and ``format_map``, each field checked as it is made."""
        if not isinstance(value, _METHODS) or value.__name__ not in ("format", "format_map"):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        is_format_map = value.__name__ == "format_map"
        formatter: Formatter | EscapeFormatter = (
            EscapeFormatter(self, escape=owner.escape) if isinstance(owner, Markup) else Formatter(self)
        )
        str_type = type(owner)

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            formatter.total = 0
            return str_type(formatter.vformat(owner, args, kwargs))

        return update_wrapper(bounded, value)


def _call_construct(obj: Any) -> str | None:
    """The pattern for a call of ``obj`` in a tag (``again(``), from a macro's or function's name."""
    name = getattr(obj, "__name__", None) or getattr(obj, "name", None)
    return rf"\b{re.escape(str(name))}\s*\(" if name else None
