"""Read a workspace YAML file into plain Python data plus the line and column of every node.

ruamel.yaml's round-trip loader keeps positions (``.lc``) on every mapping and sequence; they
are copied into a :class:`SourceMap` keyed by the path of keys and indexes that pydantic uses
in its error locations, so every validation error can point at the line of the defect. The
data handed to pydantic is plain (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
``date``, ``datetime``, ``None``) so no ruamel type leaks into the models.

Nothing here raises for a bad file: every defect becomes a :class:`~engine.errors.Problem`.
Defects without a line of their own (an empty file, undecodable bytes, binary junk) are at line 1;
so is anything the YAML library itself fails on without a position (a library bug on odd input
such as the YAML 1.1 integer form ``+_`` is a problem in the file, never a traceback).

Budgets, because a workspace file is user content and the daemon reads it on every save:

* a file over :data:`MAX_FILE_BYTES` (1 MiB) is refused before it is parsed. The shipped
  workspace's largest file is under 8 KB; a season's shipping cutoffs for 200 countries and
  four methods is about 100 KB;
* aliases (``*name``) are cheap to parse (ruamel shares one object per anchor) but each use
  is copied out into plain data here, so a ten-line "billion laughs" file would expand to
  10⁹ nodes and gigabytes. At most :data:`MAX_ALIAS_NODES` nodes may be produced through
  aliases per file, which leaves room for every sensible reuse (a shared ``limits:`` block
  used by a hundred steps is a few hundred nodes); past it the file is refused at the alias
  that crossed the line, after a few milliseconds and a few hundred KB. An anchor used inside
  itself is refused the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from engine.errors import Problem, SourceLocation

Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 1 << 20
MAX_ALIAS_NODES = 10_000


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class SourceMap:
    """Positions of the keys and values of one file, by their path (``("steps", 2, "send")``)."""

    path: Path
    keys: dict[Loc, Position] = field(default_factory=dict)
    values: dict[Loc, Position] = field(default_factory=dict)
    containers: set[Loc] = field(default_factory=set)

    def location(self, loc: Loc, *, at_key: bool = False) -> SourceLocation:
        """Where ``loc`` is written: its value (or, with ``at_key`` or for a mapping/list value, its key).

        A path that is not in the file (a missing key) resolves to its nearest written parent;
        the file's first line when there is none.
        """
        probe = tuple(loc)
        while probe:
            if probe in self.keys:
                use_key = at_key or probe in self.containers or probe not in self.values
                position = self.keys[probe] if use_key else self.values[probe]
                return SourceLocation(self.path, position.line, position.column)
            probe = probe[:-1]
        return SourceLocation(self.path, 1, 1)

    def __call__(self, loc: Loc) -> SourceLocation:
        return self.location(loc)


@dataclass
class YamlDocument:
    """A parsed file: ``data`` is ``None`` for an empty file (only comments or nothing)."""

    path: Path
    data: Any
    source: SourceMap


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that leaves an impossible date (``2026-02-30``) as text.

    The default raises a bare ``ValueError`` without a position; as text it reaches the
    models, which report it as "expected a date YYYY-MM-DD" at its own line.
    """

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        try:
            return super().construct_yaml_timestamp(node, values)
        except (ValueError, OverflowError):
            return self.construct_scalar(node)

    def construct_yaml_int(self, node: Any) -> Any:
        """A plain scalar ruamel takes for an integer but cannot read (``+_``, ``0x_``) is text.

        YAML 1.2's integers need at least one digit; ruamel's pattern also matches signs and
        underscores alone and then fails with a bare ``IndexError``.
        """
        try:
            return super().construct_yaml_int(node)
        except (ValueError, IndexError):
            return self.construct_scalar(node)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """Any exception while building a value becomes a YAML error at that value's position.

        ruamel raises a bare ``IndexError`` for ``+_`` (a YAML 1.1 integer with no digits) and
        could do the same for other odd scalars; the models then never see the value, but
        the marketer sees where it is.
        """
        try:
            return super().construct_object(node, deep=deep)
        except (YAMLError, RecursionError):
            raise
        except Exception as exc:  # noqa: BLE001 — whatever the library fails on is a located problem
            raise ConstructorError(
                None, None, f"cannot read this value ({type(exc).__name__}: {exc})", node.start_mark
            ) from None


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)
_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    return yaml


def read_yaml(path: Path) -> tuple[YamlDocument | None, list[Problem]]:
    """Read and parse ``path``; ``(None, problems)`` when the file cannot be parsed at all."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [_too_large(path, size)]
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        return None, [Problem(SourceLocation(path, 1, 1), f"cannot read the file: {exc.strerror or exc}")]
    return parse_yaml(raw, path)


def _too_large(path: Path, size: int) -> Problem:
    return _at_line_one(
        path,
        f"the file is {_size(size)}; workspace YAML files may be at most {_size(MAX_FILE_BYTES)}",
    )


def _size(count: int) -> str:
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    return f"{count / 1024:.0f} KiB" if count >= 1024 else f"{count} bytes"


def parse_yaml(raw: bytes | str, path: Path) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse YAML text (bytes are decoded as UTF-8, a BOM allowed) into data and positions."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > MAX_FILE_BYTES:
        return None, [_too_large(path, size)]
    if isinstance(raw, bytes):
        if b"\x00" in raw:
            return None, [
                _at_line_one(path, "this is not a text file (it contains binary data); expected YAML")
            ]
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, [
                _at_line_one(
                    path, f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
                )
            ]
    else:
        text = raw
    yaml = _yaml()
    try:
        node = yaml.load(text)
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"character {exc.character!r}" if isinstance(exc.character, str) else "a character"
        return None, [Problem(SourceLocation(path, line, 1), f"{what} is not allowed in YAML text")]
    except MarkedYAMLError as exc:
        return None, [_syntax_problem(path, exc, text)]
    except YAMLError as exc:
        return None, [_at_line_one(path, f"YAML error: {_one_line(str(exc))}")]
    except RecursionError:
        return None, [_at_line_one(path, "the YAML is nested too deeply to read")]
    except Exception as exc:  # noqa: BLE001 — a library failure on odd input is still a problem in the file
        return None, [_library_problem(path, yaml, exc)]
    source = SourceMap(path)
    problems: list[Problem] = []
    try:
        data = _plain(node, (), source, problems, _Expansion(), Position(1, 1))
    except _Refused as refused:
        return None, [Problem(SourceLocation(path, refused.at.line, refused.at.column), refused.message)]
    except RecursionError:
        return None, [_at_line_one(path, "the YAML is nested too deeply to read")]
    return YamlDocument(path, data, source), problems


def _library_problem(path: Path, yaml: YAML, exc: Exception) -> Problem:
    """Where the reader had got to when the YAML library failed, and what it said, on one line."""
    line, column = 1, 1
    try:
        mark = yaml.reader.get_mark()
        line, column = mark.line + 1, mark.column + 1
    except Exception:  # noqa: BLE001, S110 — no position to be had: line 1
        pass
    detail = _one_line(str(exc))[:120]
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return Problem(SourceLocation(path, line, column), f"the YAML library cannot read this file ({what})")


def _syntax_problem(path: Path, exc: MarkedYAMLError, text: str) -> Problem:
    """A syntax error in Tidings' words, at the line that has the mistake, with what to do about it.

    The YAML library reports where it noticed, which is often a line late (a key without ``:`` is
    only noticed at the next key; ``-send`` without a space only at the next item) and in parser
    terms (``expected <block end>, but found '<block mapping start>'``). :func:`_explain` looks at
    the lines around that place for the usual mistakes; the library's words are kept only for
    what it does not recognise.
    """
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
        mark = exc.context_mark  # an unclosed quote or bracket: point at where it was opened
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    problem = _one_line(exc.problem or "") or "invalid YAML"
    explained = _explain(problem, exc, text.splitlines(), line, column)
    if explained is not None:
        line, column, message = explained
        return Problem(SourceLocation(path, line, column), f"YAML syntax error: {message}")
    problem = problem.split(". ")[0] if "duplicate key" in problem else problem
    context = _one_line(exc.context or "")
    message = f"YAML syntax error: {problem}"
    if context and "duplicate" not in problem:
        message += f" ({context})"
    return Problem(SourceLocation(path, line, column), message)


_DASH_WITHOUT_SPACE = re.compile(r"^\s*-[^\s-]")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _significant(lines: list[str], before: int) -> int | None:
    """The 1-based number of the last line before line ``before`` that holds data (not blank or a comment)."""
    for number in range(before - 1, 0, -1):
        stripped = lines[number - 1].strip()
        if stripped and not stripped.startswith("#"):
            return number
    return None


def _explain(
    problem: str, exc: MarkedYAMLError, lines: list[str], line: int, column: int
) -> tuple[int, int, str] | None:
    """``(line, column, message)`` for the mistakes a marketer makes; None for anything else."""
    current = lines[line - 1] if 0 < line <= len(lines) else ""
    context_line = exc.context_mark.line + 1 if exc.context_mark is not None else None
    if "\\t" in problem or "'\t'" in problem or (current[column - 1 : column] == "\t"):
        return line, column, "a tab character; YAML indents with spaces only"
    if "could not find expected ':'" in problem and context_line is not None:
        return context_line, 1, "this line has no ':' after its key; write key: value"
    if "mapping values are not allowed" in problem:
        previous = _significant(lines, line)
        before = current[: column - 1]
        if previous is not None:
            above = lines[previous - 1]
            if ":" not in above and not above.lstrip().startswith("-") and _indent(above) == _indent(current):
                return previous, 1, "this line has no ':' after its key; write key: value"
        if ":" in before:  # the value itself holds a colon and a space
            return (
                line,
                column,
                ("a ': ' inside a value; put the whole value in quotes (name: \"Claim opened: now\")"),
            )
        if previous is not None and _indent(current) > _indent(lines[previous - 1]):
            return (
                line,
                1,
                (
                    f"this key is indented more than the line above (line {previous}); keys of one mapping "
                    "start in the same column"
                ),
            )
        return line, column, "a ':' where no key can start; check the indentation and quotes of this line"
    if problem.startswith(("expected <block end>", "did not find expected key", "did not find expected '-'")):
        start = context_line or 1
        for number in range(start, line):
            if _DASH_WITHOUT_SPACE.match(lines[number - 1]):
                return (
                    number,
                    _indent(lines[number - 1]) + 1,
                    ("a list item needs a space after its '-' ('- send:', not '-send:')"),
                )
        previous = _significant(lines, line)
        if previous is not None and _indent(lines[previous - 1]) == _indent(current):
            item_here = current.lstrip().startswith("- ")
            if item_here != lines[previous - 1].lstrip().startswith("- "):
                what = ("a list item", "the keys of a mapping")
                if not item_here:
                    what = ("a key", "the items of a list")
                return (
                    line,
                    _indent(current) + 1,
                    (
                        f"{what[0]} among {what[1]} (line {previous}): at one indentation, lines are either "
                        "all 'key: value' or all '- item'"
                    ),
                )
        spaces = _indent(current)
        above = f" (line {previous} has {_indent(lines[previous - 1])})" if previous is not None else ""
        return (
            line,
            1,
            (
                f"this line's indentation ({spaces} space{'s' if spaces != 1 else ''}) does not fit the "
                f"lines above{above}; the items of one list, and the keys of one mapping, start in the same "
                "column"
            ),
        )
    if "end of stream" in problem and "quoted scalar" in (exc.context or ""):
        return line, column, "a quote opened here is never closed; close it on the same line"
    if problem.startswith(("expected ',' or '}'", "expected ',' or ']'")) and context_line is not None:
        bracket = "{" if "}" in problem else "["
        closing = "}" if bracket == "{" else "]"
        return (
            context_line,
            1,
            (
                f"the '{bracket}' on this line is not closed before line {line}; close it with '{closing}' "
                "on the same line"
            ),
        )
    return None


def _at_line_one(path: Path, message: str) -> Problem:
    return Problem(SourceLocation(path, 1, 1), message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Refused(Exception):
    def __init__(self, message: str, at: Position) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


@dataclass
class _Expansion:
    """What copying a file's aliases has cost so far (see the module docstring)."""

    copied: set[int] = field(default_factory=set)  # containers copied out at least once
    open: set[int] = field(default_factory=set)  # containers being copied (the path from the root)
    aliased_nodes: int = 0

    def enter(self, container: Any, at: Position, via_alias: bool) -> bool:
        """Start copying ``container``; True when this copy comes through an alias."""
        key = id(container)
        if key in self.open:
            raise _Refused("this alias refers to the anchor it is inside of; data cannot contain itself", at)
        self.open.add(key)
        again = key in self.copied
        self.copied.add(key)
        return via_alias or again

    def copied_before(self, value: Any) -> bool:
        """Is ``value`` a container already copied (so this use of it is an alias)?"""
        return isinstance(value, CommentedMap | CommentedSeq) and id(value) in self.copied

    def leave(self, container: Any) -> None:
        self.open.discard(id(container))

    def count(self, at: Position) -> None:
        """One more node copied through the alias written at ``at``."""
        self.aliased_nodes += 1
        if self.aliased_nodes > MAX_ALIAS_NODES:
            raise _Refused(
                f"aliases here expand to more than {MAX_ALIAS_NODES:,} values; "
                "write the data out or use fewer nested aliases",
                at,
            )


def _plain(
    node: Any,
    loc: Loc,
    source: SourceMap,
    problems: list[Problem],
    expansion: _Expansion,
    at: Position,
    alias: Position | None = None,
) -> Any:
    """Copy ruamel's node into plain Python, recording positions on the way.

    ``alias``: this node is a copy of one written elsewhere, through the alias written at
    that position (every node of the copy counts against :data:`MAX_ALIAS_NODES`, and a
    refusal points at the alias, see :class:`_Expansion`).
    """
    if alias is not None:
        expansion.count(alias)
    if isinstance(node, CommentedMap | CommentedSeq):
        if expansion.enter(node, at, alias is not None) and alias is None:
            alias = at
        try:
            return _container(node, loc, source, problems, expansion, alias)
        finally:
            expansion.leave(node)
    if isinstance(node, TaggedScalar):
        position = source.values.get(loc, Position(1, 1))
        tag = getattr(node.tag, "value", node.tag)
        problems.append(
            Problem(
                SourceLocation(source.path, position.line, position.column),
                f"unknown YAML tag {tag}; remove it",
            )
        )
        return str(node.value)
    return _scalar(node)


def _container(
    node: CommentedMap | CommentedSeq,
    loc: Loc,
    source: SourceMap,
    problems: list[Problem],
    expansion: _Expansion,
    alias: Position | None,
) -> Any:
    if isinstance(node, CommentedMap):
        result: dict[str, Any] = {}
        for raw_key, value in node.items():
            key = _key(raw_key)
            if key is None:
                position = _position(node, raw_key, key_position=True)
                problems.append(
                    Problem(
                        SourceLocation(source.path, position.line, position.column),
                        "a key must be a single word or text, not a list or mapping",
                    )
                )
                continue
            child = (*loc, key)
            source.keys[child] = _position(node, raw_key, key_position=True)
            source.values[child] = _position(node, raw_key, key_position=False)
            if isinstance(value, CommentedMap | CommentedSeq):
                source.containers.add(child)
            at = source.keys[child] if expansion.copied_before(value) else source.values[child]
            result[key] = _plain(value, child, source, problems, expansion, at, alias)
        return result
    items: list[Any] = []
    for index, value in enumerate(node):
        child = (*loc, index)
        try:
            line, column = node.lc.item(index)
            position = Position(line + 1, column + 1)
        except (KeyError, TypeError, AttributeError):
            position = source.keys.get(loc, Position(1, 1))
        source.keys[child] = position
        source.values[child] = position
        if isinstance(value, CommentedMap | CommentedSeq):
            source.containers.add(child)
        # ruamel gives an alias the position of its anchor: point at the list's own key instead.
        at = source.keys.get(loc, position) if expansion.copied_before(value) else position
        items.append(_plain(value, child, source, problems, expansion, at, alias))
    return items


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime):
        return datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=value.tzinfo,
        )
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    if isinstance(value, str):
        return str(value)
    return str(value)


def _key(raw: Any) -> str | None:
    if isinstance(raw, CommentedMap | CommentedSeq | dict | list | tuple):
        return None
    if isinstance(raw, bool | ScalarBoolean):
        return "true" if raw else "false"
    if raw is None:
        return "null"
    if isinstance(raw, date):
        return raw.isoformat()
    return str(raw)


def _position(node: CommentedMap, key: Any, *, key_position: bool) -> Position:
    try:
        line, column = node.lc.key(key) if key_position else node.lc.value(key)
        return Position(line + 1, column + 1)
    except (KeyError, TypeError, AttributeError):
        # A key merged in with ``<<: *anchor`` has no position of its own in this mapping.
        line = getattr(node.lc, "line", 0) or 0
        column = getattr(node.lc, "col", 0) or 0
        return Position(line + 1, column + 1)
