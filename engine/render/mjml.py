"""MJML → HTML with MRML, once per distinct document, Jinja tags kept in place.

Before MRML sees the document every Jinja tag (``{{ … }}``, ``{% … %}``) is swapped for an
opaque ASCII token, and swapped back afterwards. That makes three things safe that break
when raw Jinja meets an XML parser: ``<`` or quotes inside a tag (``{% if a < 5 %}``,
``alt="{{ "x" }}"``), HTML-escaping of ``&``/``>`` inside expressions, and CSS inlining.

It also gives a *probe* for free: if a token does not come out of MRML, the Jinja sat
somewhere MRML rewrites or drops (``width="{{ w }}"``, a tag inside an element's attribute
list). Such a template cannot be compiled once; the renderer falls back to rendering the
Jinja first and compiling per message, and ``validate`` reports it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

import mrml

from engine.render.errors import RenderError

JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
TOKEN = re.compile(r"tdjx(\d+)xjdt")


def token(index: int) -> str:
    return f"tdjx{index}xjdt"


@dataclass(frozen=True, slots=True)
class Protected:
    text: str
    tags: tuple[str, ...]


def protect(source: str) -> Protected:
    """Replace every Jinja tag by a token MRML treats as a plain word."""
    tags: list[str] = []

    def swap(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return token(len(tags) - 1)

    if TOKEN.search(source):
        raise RenderError("the template contains a reserved word of the form tdjx<N>xjdt")
    return Protected(JINJA_TAG.sub(swap, source), tuple(tags))


def restore(text: str, tags: tuple[str, ...]) -> str:
    return TOKEN.sub(lambda m: tags[int(m.group(1))], text)


@dataclass(frozen=True, slots=True)
class MjmlResult:
    """MRML's output with tokens still in place (restore with the same ``tags``)."""

    html: str
    tags: tuple[str, ...]
    warnings: tuple[str, ...]
    lost_tags: tuple[str, ...]  # Jinja that did not survive compilation (non-empty → per-message fallback)


def _warning_text(warning: mrml.Warning, source: str) -> str:
    snippet = source[warning.start : warning.end][:60]
    return f"MJML warning {warning.kind} at {snippet!r}" if snippet else f"MJML warning {warning.kind}"


def compile_mjml(document: str) -> tuple[str, tuple[str, ...]]:
    """One MRML call; errors become :class:`RenderError` (location added by the caller)."""
    try:
        output = mrml.to_html(document)
    except Exception as exc:  # mrml raises OSError/ValueError with its parser message
        raise RenderError(f"MJML error: {exc}") from None
    return output.content, tuple(_warning_text(w, document) for w in output.warnings)


class MjmlCompiler:
    """Content-hash cache in front of MRML; ``calls`` counts real compilations (tests and stats read it)."""

    def __init__(self, max_entries: int = 512) -> None:
        self._cache: dict[str, MjmlResult] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self.calls = 0

    def compile(self, source: str) -> MjmlResult:
        key = hashlib.sha256(source.encode("utf-8")).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        protected = protect(source)
        html, warnings = compile_mjml(protected.text)
        with self._lock:
            self.calls += 1
        seen = {int(m.group(1)) for m in TOKEN.finditer(html)}
        lost = tuple(tag for index, tag in enumerate(protected.tags) if index not in seen)
        result = MjmlResult(html, protected.tags, warnings, lost)
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = result
        return result

    def compile_rendered(self, document: str) -> tuple[str, tuple[str, ...]]:
        """The per-message fallback: the Jinja is already rendered, so there is nothing to protect."""
        with self._lock:
            self.calls += 1
        return compile_mjml(document)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
