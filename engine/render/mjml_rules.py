"""MJML's own rules, checked on the document MRML compiles: tags, attributes, nesting, closing tags.

MRML compiles what it is given without a word: ``<mj-buton>`` is passed through as an unknown
HTML element (the button vanishes in every mail client), ``</mj-colum>`` is ignored, and an
attribute MJML does not know is dropped. So ``validate`` checks each email against MJML's
published component list (``mjml_spec/components.json``: MJML's own packages' data, see the
README there): every tag a component (or one of the few MJML allows without one), every
attribute one its component declares, every child allowed in its parent, every tag closed, and
no MJML tag inside the HTML content of ``mj-text``, ``mj-button`` and the other components whose
content is HTML (MJML shows it as an unknown HTML element there).

The document checked is the resolved one — the template's blocks inside its layout, partials
inside the elements that include them — so a section placed where MJML does not allow it is
found wherever it comes from; each tag carries a marker naming the file and line it was
written on (:class:`~engine.render.structure.StructureResolver` with ``mark=True``), and every
finding is reported there. Jinja in the document is blanked first (both branches of an ``if``
are read; they normally hold the same tags).

Cost: one regular-expression scan per template and locale file, ~1 ms for the shipped emails.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.errors import Problem, SourceLocation
from engine.render.structure import MARK

SPEC_FILE = Path(__file__).with_name("mjml_spec") / "components.json"
ROOT = "mjml"
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_TOKEN = re.compile(
    r"\x1d(?P<file>\d+):(?P<line>\d+)\x1d"
    r"|<!--.*?-->"
    r"|<(?P<close>/)?(?P<name>[A-Za-z][\w:.-]*)(?P<attrs>(?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(?P<self>/)?>",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(r"([^\s=/\"'>]+)(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_MJ_TAG = re.compile(r"<(/?)(mj-[\w-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class MjmlSpec:
    """MJML's published components: attributes, raw-HTML content, allowed children."""

    version: str
    attributes: dict[str, frozenset[str]]
    ending_tags: frozenset[str]
    children: dict[str, tuple[str, ...]]
    child_patterns: dict[str, tuple[re.Pattern[str], ...]]
    component_less: frozenset[str]
    global_attributes: frozenset[str]

    def is_tag(self, name: str) -> bool:
        return name == ROOT or name in self.attributes or name in self.component_less

    def may_hold(self, parent: str, child: str) -> bool:
        """MJML's ``validChildren``: only components are checked, in a parent that is one."""
        if parent not in self.attributes or child not in self.attributes:
            return True
        allowed = self.children.get(parent, ())
        return child in allowed or any(p.search(child) for p in self.child_patterns.get(parent, ()))

    def parents_of(self, child: str) -> list[str]:
        return sorted(parent for parent, allowed in self.children.items() if child in allowed)


@lru_cache(maxsize=1)
def spec() -> MjmlSpec:
    data = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
    children: dict[str, tuple[str, ...]] = {}
    patterns: dict[str, tuple[re.Pattern[str], ...]] = {}
    for parent, allowed in data["children"].items():
        children[parent] = tuple(entry for entry in allowed if isinstance(entry, str))
        patterns[parent] = tuple(re.compile(entry["pattern"]) for entry in allowed if isinstance(entry, dict))
    return MjmlSpec(
        version=data["mjml_version"],
        attributes={name: frozenset(info["attributes"]) for name, info in data["components"].items()},
        ending_tags=frozenset(name for name, info in data["components"].items() if info["ending_tag"]),
        children=children,
        child_patterns=patterns,
        component_less=frozenset(data["component_less_tags"]),
        global_attributes=frozenset(data["global_attributes"]),
    )


@dataclass
class _Open:
    name: str
    where: SourceLocation
    known: bool = True


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


class _Checker:
    def __init__(self, files: list[Path], fallback: Path) -> None:
        self.spec = spec()
        self.files = files
        self.where = SourceLocation(fallback, 1)
        self.problems: list[Problem] = []

    def problem(self, where: SourceLocation, message: str) -> None:
        self.problems.append(Problem(where, message))

    def run(self, text: str) -> list[Problem]:
        text = _JINJA.sub(_blank, text)
        stack: list[_Open] = []
        position = 0
        while True:
            match = _TOKEN.search(text, position)
            if match is None:
                break
            position = match.end()
            if match.group("file") is not None:
                index = int(match.group("file"))
                path = self.files[index] if index < len(self.files) else self.where.path
                self.where = SourceLocation(path, int(match.group("line")))
                continue
            name = match.group("name")
            if name is None:
                continue  # an HTML comment
            lowered = name.lower()
            if match.group("close"):
                self._close(lowered, stack)
                continue
            self._open(lowered, match.group("attrs"), stack)
            if match.group("self"):
                continue
            if lowered in self.spec.ending_tags:
                position = self._raw_content(text, position, lowered, stack)
                continue
            known = self.spec.is_tag(lowered)
            if known or lowered.startswith("mj-"):  # an unknown mj- tag still pairs with its closing tag
                stack.append(_Open(lowered, self.where, known))
        for left in reversed(stack):
            if left.known:
                self.problem(left.where, f"<{left.name}> is never closed")
        return self.problems

    def _open(self, name: str, attrs: str, stack: list[_Open]) -> None:
        parent = stack[-1].name if stack else None
        if not self.spec.is_tag(name):
            if name.startswith("mj-"):
                known = sorted([*self.spec.attributes, *self.spec.component_less])
                self.problem(self.where, f"unknown MJML tag <{name}>{_did_you_mean(name, known, '<', '>')}")
            else:
                self.problem(
                    self.where,
                    f"<{name}> is HTML, not MJML: MJML drops it here; put HTML inside <mj-text> or <mj-raw>",
                )
            return
        if parent is None and name != ROOT:
            self.problem(self.where, f"<{name}> is outside <mjml>: an email is one <mjml> document")
        elif parent is not None and not self.spec.may_hold(parent, name):
            allowed = ", ".join(self.spec.parents_of(name)) or "nowhere"
            self.problem(self.where, f"<{name}> cannot be used inside <{parent}>, only inside: {allowed}")
        self._attributes(name, attrs, parent)

    def _attributes(self, name: str, attrs: str, parent: str | None) -> None:
        if name == ROOT or name in ("mj-all", "mj-class") or name not in self.spec.attributes:
            return  # like MJML: the root, mj-all and mj-class take any attributes
        allowed = self.spec.attributes[name] | self.spec.global_attributes
        for attribute in _ATTRIBUTE.findall(MARK.sub("", attrs)):
            if attribute.lower() not in allowed:
                hint = _did_you_mean(attribute.lower(), sorted(allowed), "'", "'")
                self.problem(self.where, f"<{name}> has no attribute '{attribute}'{hint} (MJML drops it)")

    def _close(self, name: str, stack: list[_Open]) -> None:
        names = [entry.name for entry in stack]
        if name in names:
            while stack and stack[-1].name != name:
                left = stack.pop()
                if left.known:
                    self.problem(left.where, f"<{left.name}> is never closed (</{name}> comes first)")
            stack.pop()
            return
        top = stack[-1].name if stack else None
        hint = _did_you_mean(name, names[::-1], "</", ">")
        opened = f" (the open tag is <{top}>, line {stack[-1].where.line})" if top else ""
        self.problem(self.where, f"closing tag </{name}> matches no open tag{hint}{opened}")
        if top is not None and hint and f"</{top}>" in hint:
            stack.pop()  # a misspelt closing tag of the open element: take it as meant, no second problem

    def _raw_content(self, text: str, start: int, name: str, stack: list[_Open]) -> int:
        """Skip the HTML content of an ending-tag component; MJML tags inside it are problems.

        A closing tag of an element still open around it (``<mj-text>…</mj-column>``) means the
        ending tag was never closed: that is the one problem, and reading goes on from there.
        """
        opened = self.where
        closing = re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE)
        end = closing.search(text, start)
        content_end = end.start() if end is not None else len(text)
        around = {entry.name for entry in stack}
        found: list[tuple[SourceLocation, str]] = []
        where = opened
        cursor = start
        for inner in _MJ_TAG.finditer(text, start, content_end):
            where = self._location_at(text, cursor, inner.start(), where)
            cursor = inner.start()
            tag = inner.group(2).lower()
            if inner.group(1) and tag in around:
                self.problem(opened, f"<{name}> is never closed (</{tag}> comes first)")
                self.where = where
                return inner.start()
            found.append((where, f"<{inner.group(1)}{tag}>"))
        if end is None:
            self.problem(opened, f"<{name}> is never closed")
            return len(text)
        for at, tag in found:
            self.problem(
                at,
                f"{tag} inside <{name}>: the content of <{name}> is HTML, so MJML shows this tag as is "
                f"(close the <{name}> first)",
            )
        self.where = self._location_at(text, start, end.start(), opened)
        return end.end()

    def _location_at(self, text: str, start: int, end: int, where: SourceLocation) -> SourceLocation:
        for mark in MARK.finditer(text, start, end):
            index = int(mark.group(1))
            path = self.files[index] if index < len(self.files) else where.path
            where = SourceLocation(path, int(mark.group(2)))
        return where


def _did_you_mean(name: str, candidates: list[str], before: str, after: str) -> str:
    hint = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f"; did you mean {before}{hint[0]}{after}?" if hint else ""


def check_document(marked: str, files: list[Path], path: Path) -> list[Problem]:
    """Findings on a marked, resolved MJML document (``files``: the file of each marker index)."""
    return _Checker(files, path).run(marked)


__all__ = ["MjmlSpec", "check_document", "spec"]
