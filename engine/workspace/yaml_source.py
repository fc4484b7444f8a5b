"""Read a workspace YAML file into plain Python data plus the line and column of every node.

ruamel.yaml's round-trip loader keeps positions (``.lc``) on every mapping and sequence; they
are copied into a :class:`SourceMap` keyed by the path of keys and indexes that pydantic uses
in its error locations, so every validation error can point at the line of the defect. The
data handed to pydantic is plain (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
``date``, ``datetime``, ``None``) so no ruamel type leaks into the models.

Nothing here raises for a bad file: every defect becomes a :class:`~engine.errors.Problem`.
Defects without a line of their own (an empty file, undecodable bytes, binary junk) are at line 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from engine.errors import Problem, SourceLocation

Loc = tuple[str | int, ...]


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


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    return yaml


def read_yaml(path: Path) -> tuple[YamlDocument | None, list[Problem]]:
    """Read and parse ``path``; ``(None, problems)`` when the file cannot be parsed at all."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(SourceLocation(path, 1, 1), f"cannot read the file: {exc.strerror or exc}")]
    return parse_yaml(raw, path)


def parse_yaml(raw: bytes | str, path: Path) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse YAML text (bytes are decoded as UTF-8, a BOM allowed) into data and positions."""
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
    try:
        node = _yaml().load(text)
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"character {exc.character!r}" if isinstance(exc.character, str) else "a character"
        return None, [Problem(SourceLocation(path, line, 1), f"{what} is not allowed in YAML text")]
    except MarkedYAMLError as exc:
        return None, [_syntax_problem(path, exc)]
    except YAMLError as exc:
        return None, [_at_line_one(path, f"YAML error: {_one_line(str(exc))}")]
    except RecursionError:
        return None, [_at_line_one(path, "the YAML is nested too deeply to read")]
    source = SourceMap(path)
    problems: list[Problem] = []
    data = _plain(node, (), source, problems)
    return YamlDocument(path, data, source), problems


def _syntax_problem(path: Path, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
        mark = exc.context_mark  # an unclosed quote or bracket: point at where it was opened
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    problem = _one_line(exc.problem or "") or "invalid YAML"
    problem = problem.split(". ")[0] if "duplicate key" in problem else problem
    context = _one_line(exc.context or "")
    message = f"YAML syntax error: {problem}"
    if context and "duplicate" not in problem:
        message += f" ({context})"
    return Problem(SourceLocation(path, line, column), message)


def _at_line_one(path: Path, message: str) -> Problem:
    return Problem(SourceLocation(path, 1, 1), message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _plain(node: Any, loc: Loc, source: SourceMap, problems: list[Problem]) -> Any:
    """Copy ruamel's node into plain Python, recording positions on the way."""
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
            result[key] = _plain(value, child, source, problems)
        return result
    if isinstance(node, CommentedSeq):
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
            items.append(_plain(value, child, source, problems))
        return items
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
