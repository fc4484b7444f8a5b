"""Compile-once template objects: everything per template, locale and campaign step, nothing per message.

A :class:`CompiledEmail` holds Jinja templates for the subject, preheader, HTML and text
part. In the normal (``once``) mode the HTML template *is* MRML's output, and all four parts
are also joined into ``combined`` (see :mod:`engine.render.combined`), so a message costs one
Jinja render. In ``per_message`` mode (the template's Jinja changes the MJML structure, see
:mod:`engine.render.mjml`) the MJML source is kept as a Jinja template, and MRML, link
tagging and the text part run for every message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from jinja2 import Template

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value made on first use: a part of a compiled email that only some renders need.

    In ``once`` mode every message renders the ``combined`` template, so the HTML and text parts
    as templates of their own (and the names the template reads) are needed only by ``validate``'s
    campaign checks and a few callers; compiling them up front was ~40 % of every compile
    (measured on the shipped emails: six Jinja compilations per file, two of them these).
    """

    __slots__ = ("_lock", "_make", "_value")

    def __init__(self, make: Callable[[], T]) -> None:
        self._make: Callable[[], T] | None = make
        self._value: T | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, value: T) -> Lazy[T]:
        lazy: Lazy[T] = cls(lambda: value)
        lazy.get()
        return lazy

    def get(self) -> T:
        if self._make is not None:
            with self._lock:
                if self._make is not None:
                    self._value = self._make()
                    self._make = None
        return self._value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class CompiledEmail:
    name: str
    path: Path  # the locale file actually used
    locale: str  # the locale of that file: dates, numbers and money are formatted in it
    files: tuple[Path, ...]  # every file it was made from (layouts, partials, text part)
    body_offset: int
    subject: Template
    preheader: Template | None
    from_header: str | None
    reply_to: str | None
    lazy_html: Lazy[Template]  # compiled HTML (once) or the MJML source (per_message): see ``html``
    lazy_text: Lazy[Template | None]  # None in per_message mode unless email.txt exists: see ``text``
    mode: str  # "once" | "per_message"
    fallback_reason: str | None = None
    mjml_warnings: tuple[str, ...] = ()
    campaign_id: str | None = None
    step_id: str | None = None
    source: str = field(default="", repr=False)  # the resolved MJML document
    html_source: str = field(default="", repr=False)  # the Jinja source of ``html`` (once mode)
    text_source: str = field(default="", repr=False)  # the Jinja source of ``text``
    lazy_variables: Lazy[frozenset[str]] = field(default_factory=lambda: Lazy.of(frozenset()))
    # Subject and preheader as one template (one render per message), split on ``separator``:
    # a random token chosen at compile time, so contact data cannot forge it.
    headline: Template | None = None
    separator: str = ""
    # Once mode: subject, preheader, HTML and text as one template, one render per message,
    # its output split on ``separator`` (see :mod:`engine.render.combined`). None: separate renders.
    combined: Template | None = None

    @property
    def html(self) -> Template:
        return self.lazy_html.get()

    @property
    def text(self) -> Template | None:
        return self.lazy_text.get()

    @property
    def variables(self) -> frozenset[str]:
        """Context names the template reads (``jinja2.meta``)."""
        return self.lazy_variables.get()


@dataclass(frozen=True, slots=True)
class CompiledPost:
    name: str
    path: Path
    locale: str
    files: tuple[Path, ...]
    text: Template
    source: str = field(default="", repr=False)
    variables: frozenset[str] = frozenset()
