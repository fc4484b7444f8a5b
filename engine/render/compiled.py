"""Compile-once template objects: everything per template, locale and campaign step, nothing per message.

A :class:`CompiledEmail` holds Jinja templates for the subject, preheader, HTML and text
part. In the normal (``once``) mode the HTML template *is* MRML's output, and all four parts
are also joined into ``combined`` (see :mod:`engine.render.combined`), so a message costs one
Jinja render. In ``per_message`` mode (the template's Jinja changes the MJML structure, see
:mod:`engine.render.mjml`) the MJML source is kept as a Jinja template, and MRML, link
tagging and the text part run for every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Template


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
    html: Template  # compiled HTML (once) or the MJML source (per_message)
    text: Template | None  # None in per_message mode unless email.txt exists
    mode: str  # "once" | "per_message"
    fallback_reason: str | None = None
    mjml_warnings: tuple[str, ...] = ()
    campaign_id: str | None = None
    step_id: str | None = None
    source: str = field(default="", repr=False)  # the resolved MJML document
    html_source: str = field(default="", repr=False)  # the Jinja source of ``html`` (once mode)
    text_source: str = field(default="", repr=False)  # the Jinja source of ``text``
    variables: frozenset[str] = frozenset()  # context names the template reads (jinja2.meta)
    # Subject and preheader as one template (one render per message), split on ``separator``:
    # a random token chosen at compile time, so contact data cannot forge it.
    headline: Template | None = None
    separator: str = ""
    # Once mode: subject, preheader, HTML and text as one template, one render per message,
    # its output split on ``separator`` (see :mod:`engine.render.combined`). None: separate renders.
    combined: Template | None = None


@dataclass(frozen=True, slots=True)
class CompiledPost:
    name: str
    path: Path
    locale: str
    files: tuple[Path, ...]
    text: Template
    source: str = field(default="", repr=False)
    variables: frozenset[str] = frozenset()
