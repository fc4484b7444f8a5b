"""Campaign expressions (``if:`` conditions, event ``where:``): Jinja2 expressions in the sandbox.

They are compiled when the workspace loads, so a syntax error or a misspelt name is a
validation error at the expression's line instead of a surprise in the middle of a send.
The names an expression may use are exactly the template context of DESIGN.md, the same
names a template sees; everything else is refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, meta, nodes
from jinja2.parser import Parser

from engine.workspace import context_schema
from engine.workspace.sandbox import BoundedSandbox

# DESIGN.md "Template context" and its functions, from the one definition of the context.
CONTEXT_NAMES: tuple[str, ...] = context_schema.CONTEXT_NAMES
FUNCTIONS: tuple[str, ...] = context_schema.FUNCTIONS


def days_until(value: date | datetime, now: datetime) -> int:
    """Whole days from ``now`` to ``value`` (negative once it has passed), counted on ``now``'s calendar."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and now.tzinfo is not None:
            value = value.astimezone(now.tzinfo)
        value = value.date()
    return (value - now.date()).days


def _environment() -> BoundedSandbox:
    # Undefined attributes evaluate to false-y Undefined (``gift_card.balance > 0`` on a contact without a
    # card is then an error, not a silent match: comparisons with Undefined raise in the default Undefined).
    # The size budgets hold here too: ``9**9**9 > 0`` is refused, not computed (at load, Jinja folds
    # constants, so it would otherwise hang ``validate``).
    return BoundedSandbox(autoescape=False)


_ENV = _environment()


class ExpressionError(ValueError):
    """An expression that does not compile or names something outside the template context."""


def check_expression(source: str) -> None:
    """Raise :class:`ExpressionError` when ``source`` is not a valid expression over the context names."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError('expected an expression such as "gift_card.balance > 0", got nothing')
    try:
        tree = _parse(source)
        names = meta.find_undeclared_variables(tree)
    except TemplateSyntaxError as exc:  # includes TemplateAssertionError (an unknown filter or test)
        raise ExpressionError(f"expression {source!r} is not valid: {exc.message}") from None
    except RecursionError:
        raise ExpressionError(_too_deep(source)) from None
    unknown = sorted(names - set(CONTEXT_NAMES) - set(FUNCTIONS))
    if unknown:
        name = unknown[0]
        hint = difflib.get_close_matches(name, CONTEXT_NAMES, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ExpressionError(
            f"expression {source!r} uses unknown name '{name}'{suggestion} "
            f"(expressions see: {', '.join(CONTEXT_NAMES + FUNCTIONS)})"
        )
    attributes = context_schema.unknown_attributes(tree)
    if attributes:
        raise ExpressionError(f"expression {source!r}: {attributes[0].message}")
    try:
        _compiled(source)
    except RecursionError:
        raise ExpressionError(_too_deep(source)) from None


def _too_deep(source: str) -> str:
    return f"expression {source[:60]!r}… nests brackets too deeply to read"


def _parse(source: str) -> nodes.Template:
    """Parse exactly one expression (as ``compile_expression`` does) into an AST for ``jinja2.meta``."""
    parser = Parser(_ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise TemplateSyntaxError(f"unexpected '{token.value}' after the expression", token.lineno)
    template = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr)], lineno=1)
    template.set_environment(_ENV)
    return template


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return _ENV.compile_expression(source, undefined_to_none=False)


def evaluate(source: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a checked expression over ``context`` (the template context) as a truth value.

    Names of the context that are absent are ``None`` (DESIGN.md: present-or-none), so
    ``{% if gift_card %}``-style tests work the same way in expressions and templates.
    Errors inside the evaluation (comparing ``None`` with a number, a sandbox refusal)
    propagate: the caller decides whether that ends the flow or skips the contact.
    """
    return bool(value_of(source, context))


def value_of(source: str, context: Mapping[str, Any]) -> Any:
    """The value of a checked expression over ``context`` (``event.data.send_on`` → its date text).

    An undefined attribute (``event.data.send_on`` on an event without one) comes back as
    ``None``, like an absent name, so callers test one thing for "not there"."""
    full: dict[str, Any] = {name: None for name in CONTEXT_NAMES}
    full.update(context)
    now = full.get("now")
    if isinstance(now, datetime) and "days_until" not in context:
        full["days_until"] = lambda value: days_until(value, now)
    result = _compiled(source)(**full)
    return None if isinstance(result, Undefined) else result


def expression_names(source: str) -> set[str]:
    """The context names a valid expression reads (``event.data.send_on`` → ``{"event"}``)."""
    return set(meta.find_undeclared_variables(_parse(source)))
