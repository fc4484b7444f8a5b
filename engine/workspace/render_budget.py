"""One render's budget: steps (loop iterations and calls), wall time, and the sizes of what it makes.

The renderer opens a :class:`Budget` around each message (``ACTIVE.set(budget)`` …
``ACTIVE.reset(token)``, a context variable set and reset, ~0.2 µs); the counters
(:class:`_Use`) are made only when the render first needs them — its first loop iteration or
call, or the first large string it makes — so a template without loops, calls or large values
costs nothing more. Outside a render (a campaign EXPR, Jinja folding constants at compile time)
only the size limits hold.

Sizes: no string may pass :data:`MAX_STRING` characters and no list :data:`MAX_ITEMS` items
(holding at most :data:`MAX_STRING` characters of text in all). Memory is bounded further by
charging every string over 64 Ki characters a render makes against :data:`MAX_MADE`: a
template cannot hold a thousand 1 MB strings at once. A render's output is checked before it
is joined whenever it looped, called or made a large string (otherwise its chunks are the
template's own, bounded by its size); a macro's, block's or ``{% set %}`` block's output
(:func:`bounded_concat`) always.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

MAX_STEPS = 100_000
MAX_SECONDS = 2.0
MAX_STRING = 1_000_000
MAX_ITEMS = 100_000
MAX_INT_DIGITS = 4_300
MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
MAX_MADE = 10 * MAX_STRING
_BIG = 1 << 16  # strings at least this long are charged against MAX_MADE
_CLOCK_EVERY = 0xFF  # read the clock when steps & _CLOCK_EVERY == 0: every 256 steps
_SMALL = 32  # what a number, a date or None counts as text


class BudgetExceeded(SecurityError):
    """A render (or an expression) asked for more work or memory than a budget allows.

    ``construct`` is a regular expression for the inside of the Jinja tag that did it (``\\bfor\\s+i\\b``,
    ``\\*\\*``), so a caller can point at the tag in the author's file.
    """

    def __init__(self, message: str, construct: str | None = None) -> None:
        super().__init__(message)
        self.construct = construct


@dataclass(frozen=True, slots=True)
class Budget:
    """The limits of one render; the renderer holds one and opens it per render."""

    seconds: float = MAX_SECONDS
    steps: int = MAX_STEPS


class _Use:
    """What one render has spent so far (made when it first spends anything, see the module docstring)."""

    __slots__ = ("limit", "steps", "deadline", "seconds", "made")

    def __init__(self, budget: Budget) -> None:
        self.limit = budget.steps
        self.seconds = budget.seconds
        self.steps = 0
        self.made = 0
        self.deadline = time.monotonic() + budget.seconds

    def step(self, construct: str | None) -> None:
        self.steps += 1
        if self.steps > self.limit:
            raise BudgetExceeded(
                f"the template ran more than {self.limit:,} loop iterations and calls for one message "
                "(nested loops multiply)",
                construct,
            )
        if not self.steps & _CLOCK_EVERY and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"the template took more than {self.seconds:g} s to render", construct)

    def charge(self, size: int, construct: str | None) -> None:
        self.made += size
        if self.made > MAX_MADE:
            raise BudgetExceeded(
                f"the template made more than {MAX_MADE:,} characters of large strings for one message",
                construct,
            )


# The current render's budget (before its first step) or counters (after); None outside a render.
# A context variable, so concurrent renders on threads or tasks never share counters.
ACTIVE: ContextVar[Budget | _Use | None] = ContextVar("tidings_render_budget", default=None)


def use() -> _Use | None:
    """The current render's counters (made now if it has none yet), or None outside a render."""
    current = ACTIVE.get()
    if type(current) is Budget:
        current = _Use(current)
        ACTIVE.set(current)  # undone by the renderer's ACTIVE.reset(token) at the end of the render
    return current  # type: ignore[return-value]


def counted(iterable: Iterable[Any], construct: str | None) -> Iterable[Any]:
    """``iterable`` with each item counted as a step of the current render (as is, outside one)."""
    if ACTIVE.get() is None:
        return iterable
    return _counting(iterable, construct)


def _counting(iterable: Iterable[Any], construct: str | None) -> Iterator[Any]:
    current = use()
    assert current is not None
    tick = current.step
    for item in iterable:
        tick(construct)
        yield item


def loop_construct(targets: Sequence[str]) -> str:
    """The pattern that finds ``{% for a, b in … %}`` for a loop over ``targets``."""
    names = r"\s*,\s*".join(re.escape(name) for name in targets)
    return rf"\bfor\s+\(?\s*{names}\b"


# --- sizes ---------------------------------------------------------------------------------------


def _too_long(what: str, size: int, construct: str | None) -> BudgetExceeded:
    return BudgetExceeded(
        f"{what} would be {size:,} characters long; a template may make at most {MAX_STRING:,}", construct
    )


def check_text(size: int, what: str, construct: str | None = None) -> None:
    """Refuse a string of ``size`` characters about to be made; charge it to the render when large."""
    if size > MAX_STRING:
        raise _too_long(what, size, construct)
    if size >= _BIG:
        current = use()
        if current is not None:
            current.charge(size, construct)


def check_items(count: int, what: str, construct: str | None) -> None:
    if count > MAX_ITEMS:
        raise BudgetExceeded(
            f"{what} would hold {count:,} items; a template may make lists of at most {MAX_ITEMS:,}",
            construct,
        )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def text_size(value: Any, depth: int = 0) -> int:
    """About how many characters ``value`` takes as text (exact for strings; nested values roughly)."""
    if isinstance(value, str | bytes):
        return len(value)
    if depth < 2 and isinstance(value, list | tuple):
        return len(value) + sum(text_size(item, depth + 1) for item in value)
    if depth < 2 and isinstance(value, dict):
        return len(value) + sum(text_size(k, depth + 1) + text_size(v, depth + 1) for k, v in value.items())
    if isinstance(value, int):  # bool included: its digits, as str() would write them
        return int(abs(value).bit_length() * 0.302) + 2
    return _SMALL


def bounded_concat(parts: Iterable[str]) -> str:
    """``"".join(parts)``, the environment's ``concat``: a macro's, block's or a whole render's output.

    A short buffer (a ``{% filter %}`` block around one link) is joined and then measured: its
    parts are bounded, so at most a few MB are made before a refusal. A longer one (a loop's
    output) is measured before anything is joined.
    """
    if type(parts) is list and len(parts) <= 16:
        text = "".join(parts)
        if len(text) >= _BIG:
            check_text(len(text), "the output")
        return text
    chunks = parts if type(parts) is list else list(parts)
    check_text(sum(map(len, chunks)), "the output")
    return "".join(chunks)


def checked_output(chunks: list[str]) -> list[str]:
    """A render's output chunks, measured before they are joined if it looped, called or made large strings.

    Otherwise every chunk is the template's own text or a value written once, so the
    output is bounded by the template; skipping the sum keeps a plain email at its cost.
    """
    if type(ACTIVE.get()) is _Use:
        check_text(sum(map(len, chunks)), "the message")
    return chunks


def sized(value: Any, construct: str | None = None) -> Any:
    """``value`` after checking its length (the result of ``~``, whose inputs are bounded already)."""
    if isinstance(value, str) and len(value) >= _BIG:
        check_text(len(value), "a string made with ~", construct)
    return value


def take(value: Any, what: str, construct: str | None = None) -> Any:
    """``value`` as a list (a string or mapping as it is), within the item and text budgets."""
    if isinstance(value, str | bytes):
        check_items(len(value), f"{what} of a {len(value):,}-character string", construct)
        return value
    if isinstance(value, Mapping):
        check_items(len(value), what, construct)
        return value
    items: list[Any] = []
    text = 0
    for item in value:
        items.append(item)
        text += text_size(item)
        if len(items) > MAX_ITEMS:
            check_items(len(items), what, construct)
        if text > MAX_STRING:
            raise BudgetExceeded(f"{what} would hold more than {MAX_STRING:,} characters of text", construct)
    return items
