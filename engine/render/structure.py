"""Layouts and partials, resolved once per template when it is compiled.

A template may pull shared parts in three ways: MJML's ``<mj-include path="…"/>`` (relative
to the including file), Jinja's ``{% include "…" %}`` and ``{% extends "…" %}`` with
``{% block %}`` (names relative to ``templates/``). All three are resolved *textually* here,
before MRML sees the document, because:

* MRML must see one whole ``<mjml>`` document: an extended layout or an included run of
  ``<mj-section>`` cannot be compiled on its own and then spliced in as HTML;
* MRML 0.2.4's own include loader loses the body's width for included sections (they come
  out without the 600 px wrapper), so we do not use it;
* the per-recipient Jinja (``{{ contact.first_name }}``, ``{% if coupon %}``) must stay in
  place for the compile-once path, and a textual merge leaves it untouched, whereas letting
  Jinja evaluate ``extends`` would need a render.

Every included or extended file is looked up in the same locale chain as the template
(``_layouts/base.ro.mjml`` before ``_layouts/base.mjml``), so translations of the footer
live next to the layout. Paths may not leave the templates folder.

For ``validate``'s MJML check (:mod:`engine.render.mjml_rules`) the resolver can *mark* the
document: every tag of every file read gets a marker before it naming the file and line it was
written on (:data:`MARK`), so that the check, which must see the document MRML sees (a block's
content inside its layout, a partial inside the element that includes it), still reports each
finding at the author's file and line. Markers never reach the renderer: only the check asks.

Resolving is bounded: a partial included twice by a partial included twice … doubles at
each level, so the files read for one template may add up to at most
:data:`MAX_RESOLVED_CHARS` (2 Mi characters), and so may the resolved document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.render.errors import RenderError
from engine.render.locales import localised

JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
MJ_INCLUDE = re.compile(r"<mj-include\b(?P<attrs>[^>]*?)/?>(?:\s*</mj-include>)?", re.IGNORECASE)
ATTR = re.compile(r'([\w-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
JINJA_INCLUDE = re.compile(
    r"\{%-?\s*include\s+(?:\"(?P<dq>[^\"]+)\"|'(?P<sq>[^']+)')"
    r"(?:\s+ignore\s+missing)?(?:\s+(?:with|without)\s+context)?\s*-?%\}"
)
DYNAMIC_INCLUDE = re.compile(r"\{%-?\s*(?:include|import|from)\b")
EXTENDS = re.compile(r"\A\s*\{%-?\s*extends\s+(?:\"(?P<dq>[^\"]+)\"|'(?P<sq>[^']+)')\s*-?%\}")
BLOCK_TAG = re.compile(
    r"\{%-?\s*(?:(?P<open>block)\s+(?P<name>\w+)(?:\s+(?:scoped|required))*|(?P<close>endblock)(?:\s+\w+)?)\s*-?%\}"
)
SUPER = re.compile(r"\{\{-?\s*super\(\)\s*-?\}\}")
MAX_RESOLVED_CHARS = 2 << 20
BODY = re.compile(r"<mj-body[^>]*>(?P<inner>.*)</mj-body>", re.DOTALL | re.IGNORECASE)
#: ``\x1d<file index>:<line>\x1d`` before a tag in a marked resolution (index into ``Resolved.marked``).
MARK = re.compile(r"\x1d(\d+):(\d+)\x1d")
# A tag start outside Jinja (a closing </mj-include> stays unmarked: the include pattern consumes it).
_TAG_START = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|<(?=/?[A-Za-z])(?!/mj-include\b)", re.DOTALL)


@dataclass
class Resolved:
    """One MJML document with Jinja in place, and every file it was made from (for live reload)."""

    text: str
    files: list[Path] = field(default_factory=list)
    marked: list[Path] = field(default_factory=list)  # file of each marker index (marked resolutions)


def mark_tags(text: str, index: int, first_line: int) -> str:
    """``text`` with a :data:`MARK` before every tag outside Jinja, for file ``index`` from ``first_line``."""
    out: list[str] = []
    position = 0
    line = first_line
    for match in _TAG_START.finditer(text):
        if match.group(0) != "<":
            continue
        start = match.start()
        line += text.count("\n", position, start)
        out.append(text[position:start])
        out.append(f"\x1d{index}:{line}\x1d")
        position = start
    out.append(text[position:])
    return "".join(out)


def unmarked(text: str) -> str:
    return MARK.sub("", text)


@dataclass(frozen=True, slots=True)
class _Block:
    name: str
    start: int  # start of the opening tag
    inner_start: int
    inner_end: int
    end: int  # end of the closing tag


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _top_blocks(text: str, path: Path | str) -> list[_Block]:
    """Top-level ``{% block %}`` spans, nested ones left inside their parent's inner text."""
    found: list[_Block] = []
    stack: list[tuple[str, int, int]] = []
    for match in BLOCK_TAG.finditer(text):
        if match.group("open"):
            stack.append((match.group("name"), match.start(), match.end()))
            continue
        if not stack:
            raise RenderError("endblock without a block", path=path, line=_line_at(text, match.start()))
        name, start, inner_start = stack.pop()
        if not stack:
            found.append(_Block(name, start, inner_start, match.start(), match.end()))
    if stack:
        raise RenderError(
            f"block {stack[-1][0]!r} is never closed", path=path, line=_line_at(text, stack[-1][1])
        )
    return found


def _all_blocks(text: str, path: Path | str) -> dict[str, str]:
    """Every block (any depth) by name → its inner text, as Jinja collects a child's blocks."""
    blocks: dict[str, str] = {}
    pending = [text]
    while pending:
        current = pending.pop()
        for block in _top_blocks(current, path):
            inner = current[block.inner_start : block.inner_end]
            blocks.setdefault(block.name, inner)
            pending.append(inner)
    return blocks


def _replace_super(text: str, parent: str) -> str:
    """``{{ super() }}`` in an overriding block stands for the block it replaces."""
    parts = SUPER.split(text)
    return parent.join(parts)


def _apply_blocks(text: str, overrides: dict[str, str], path: Path | str, *, keep_tags: bool) -> str:
    """Replace each block's content by its override (``super()`` = the content it replaces).

    ``keep_tags`` leaves the ``{% block %}`` tags around the new content so that a template
    further down an ``extends`` chain can override them again; the final document is made
    with ``keep_tags=False``.
    """
    out: list[str] = []
    position = 0
    for block in _top_blocks(text, path):
        out.append(text[position : block.start])
        own = _apply_blocks(text[block.inner_start : block.inner_end], overrides, path, keep_tags=keep_tags)
        if block.name in overrides:
            replacement = _apply_blocks(overrides[block.name], overrides, path, keep_tags=keep_tags)
            content = _replace_super(replacement, own)
        else:
            content = own
        out.append(f"{{% block {block.name} %}}{content}{{% endblock %}}" if keep_tags else content)
        position = block.end
    out.append(text[position:])
    return "".join(out)


class StructureResolver:
    """Resolves includes and extends for one locale, confined to ``templates_dir``."""

    def __init__(
        self, templates_dir: Path, locale: str | None, default_locale: str, *, mark: bool = False
    ) -> None:
        self.root = templates_dir.resolve()
        self.locale = locale
        self.default_locale = default_locale
        self._read_chars = 0
        self._mark = mark
        self._marked: list[Path] = []

    def resolve(self, path: Path, body: str, *, body_offset: int = 0) -> Resolved:
        """``body`` is the text of ``path`` after its front matter (``body_offset`` lines of it)."""
        files: list[Path] = [path]
        self._marked = []
        text = self._expand(path, self._marked_text(path, body, body_offset), files, (path.resolve(),))
        document = _apply_blocks(text, {}, path, keep_tags=False)
        self._check_size(len(document), path, body, 0)
        return Resolved(document, files, list(self._marked))

    def _marked_text(self, path: Path, text: str, offset: int) -> str:
        if not self._mark:
            return text
        self._marked.append(path)
        return mark_tags(text, len(self._marked) - 1, offset + 1)

    @staticmethod
    def _check_size(size: int, source: Path, text: str, offset: int) -> None:
        if size > MAX_RESOLVED_CHARS:
            raise RenderError(
                f"includes and layouts make this template over {MAX_RESOLVED_CHARS:,} characters "
                "(a file included again and again inside includes?)",
                path=source,
                line=_line_at(text, offset),
            )

    # -- internals -------------------------------------------------------------------

    def _target(self, name: str, base: Path, source: Path, text: str, offset: int) -> Path:
        candidate = (base / name).resolve()
        if not candidate.is_relative_to(self.root):
            raise RenderError(
                f"{name!r} is outside the templates folder", path=source, line=_line_at(text, offset)
            )
        chosen, _ = localised(candidate, self.locale, self.default_locale)
        if not chosen.is_file():
            raise RenderError(f"included file {name!r} not found", path=source, line=_line_at(text, offset))
        return chosen

    def _read(self, target: Path, source: Path, text: str, offset: int, stack: tuple[Path, ...]) -> str:
        if target.resolve() in stack:
            chain = " → ".join(p.name for p in (*stack, target))
            raise RenderError(f"include cycle: {chain}", path=source, line=_line_at(text, offset))
        try:
            self._check_size(self._read_chars + target.stat().st_size, source, text, offset)
            content = target.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderError(
                f"cannot read {target.name}: {exc}", path=source, line=_line_at(text, offset)
            ) from None
        self._read_chars += len(content)
        return self._marked_text(target, content, 0)

    def _expand(self, path: Path, text: str, files: list[Path], stack: tuple[Path, ...]) -> str:
        text = JINJA_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        text = self._mj_includes(path, text, files, stack)
        text = self._jinja_includes(path, text, files, stack)
        dynamic = DYNAMIC_INCLUDE.search(text)
        if dynamic:
            raise RenderError(
                "include/import must name a file in quotes (it is resolved once, at compile time)",
                path=path,
                line=_line_at(text, dynamic.start()),
            )
        extends = EXTENDS.match(text)
        if extends is None:
            if re.search(r"\{%-?\s*extends\b", text):
                raise RenderError(
                    "extends must be the first tag and name a file in quotes",
                    path=path,
                    line=_line_at(text, 0),
                )
            return text
        name = extends.group("dq") or extends.group("sq")
        target = self._target(name, self.root, path, text, extends.start())
        files.append(target)
        parent_text = self._read(target, path, text, extends.start(), stack)
        parent = self._expand(target, parent_text, files, (*stack, target.resolve()))
        merged = _apply_blocks(parent, _all_blocks(text[extends.end() :], path), path, keep_tags=True)
        self._check_size(len(merged), path, text, extends.start())  # super() repeated down a chain
        return merged

    def _mj_includes(self, path: Path, text: str, files: list[Path], stack: tuple[Path, ...]) -> str:
        def replace(match: re.Match[str]) -> str:
            attrs = {
                m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                for m in ATTR.finditer(match.group("attrs"))
            }
            name = attrs.get("path")
            if not name:
                raise RenderError("<mj-include> needs a path", path=path, line=_line_at(text, match.start()))
            target = self._target(name, path.parent, path, text, match.start())
            files.append(target)
            content = self._read(target, path, text, match.start(), stack)
            content = self._expand(target, content, files, (*stack, target.resolve()))
            kind = attrs.get("type", "mjml")
            if kind == "css":
                inline = ' inline="inline"' if attrs.get("css-inline") == "inline" else ""
                return f"<mj-style{inline}>{content}</mj-style>"
            if kind == "html":
                return f"<mj-raw>{content}</mj-raw>"
            stripped = content.strip()
            if unmarked(stripped).lstrip().lower().startswith("<mjml"):
                if re.search(r"<mj-head", stripped, re.IGNORECASE):
                    raise RenderError(
                        f"{name}: an included whole document may not have <mj-head>; "
                        "include head parts from inside <mj-head> instead",
                        path=path,
                        line=_line_at(text, match.start()),
                    )
                body = BODY.search(stripped)
                return body.group("inner") if body else ""
            return content

        return MJ_INCLUDE.sub(replace, text)

    def _jinja_includes(self, path: Path, text: str, files: list[Path], stack: tuple[Path, ...]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group("dq") or match.group("sq")
            target = self._target(name, self.root, path, text, match.start())
            files.append(target)
            content = self._read(target, path, text, match.start(), stack)
            return self._expand(target, content, files, (*stack, target.resolve()))

        return JINJA_INCLUDE.sub(replace, text)
