"""Values from outside — imported files, shop events — checked before anything reaches the database.

One rule per kind of value, shared by the importer and the events API so that a contact is the
same whichever way it arrived:

* **email addresses** — exactly one RFC 5322 addr-spec (a dot-atom local part: no quoting, no
  comments, no display name, no second address after a comma), checked by ``email-validator``
  (syntax only: no DNS lookup, the engine never waits on the network for an import). Internation-
  alised domains are accepted and stored in their ASCII (IDNA) form, lower-cased, so
  ``ana@bücher.de`` and ``ana@xn--bcher-kva.de`` are one contact and every channel can send to
  it without SMTPUTF8. Non-ASCII local parts (RFC 6531) are refused: few providers deliver them.
* **single-line text** (names, ids, tags) — no control characters at all (CR and LF would end up
  in headers; a tab or a C1 control in a name is always a paste accident), at most a given
  length;
* **any text and JSON** — no NUL character and no lone surrogate anywhere, keys included
  (PostgreSQL's text and JSONB refuse both, SQLite stores them and they break later), and JSON
  nested at most :data:`MAX_JSON_DEPTH` levels (a shop's payload is a few levels; a deeper one
  is an accident or an attack, and Python's own recursion ends near 1,000).

Each check raises :class:`InvalidValue` (a ``ValueError``) with one line that says what is wrong
and where, so pydantic reports it on the field and the importer prints ``FILE:LINE: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

MAX_JSON_DEPTH = 32
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a path, which is what a mailbox provider enforces
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class InvalidValue(ValueError):
    """A value from outside that may not be stored; the message is one line."""


def email_address(value: str) -> str:
    """``value`` as the stored address (ASCII, lower-cased), or :class:`InvalidValue` saying why."""
    text = value.strip()
    if not text:
        raise InvalidValue("an email address is required")
    if len(text) > MAX_EMAIL_LENGTH:
        raise InvalidValue(f"not an email address: longer than {MAX_EMAIL_LENGTH} characters")
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidValue(f"not an email address: {text[:80]!r} ({_one_line(str(exc))})") from None
    address = checked.ascii_email or checked.normalized
    return address.lower()


def single_line(value: str, *, field: str = "the value", max_length: int = 200) -> str:
    """``value`` stripped, refused with a line break or another control character, or over ``max_length``."""
    text = value.strip()
    found = _CONTROL.search(text)
    if found is not None:
        what = _name(found.group())
        raise InvalidValue(f"{field} contains a control character ({what}); write it on one line")
    if len(text) > max_length:
        raise InvalidValue(f"{field} is {len(text)} characters long; at most {max_length}")
    storable(text, field)
    return text


def storable(value: str, field: str = "the value") -> str:
    """``value`` unless it holds a NUL character or a lone surrogate (which no database stores)."""
    if "\x00" in value:
        raise InvalidValue(f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{field} contains an unpaired surrogate (\\ud800–\\udfff)") from None
    return value


@dataclass(frozen=True, slots=True)
class JsonProblem:
    """Where in a JSON value (``payload.items[1]``; empty for the value itself) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def unstorable_json(value: Any) -> JsonProblem | None:
    """Why ``value`` (parsed JSON, or model input) cannot be stored, and where; None when it can.

    Walks iteratively (so its own depth is no limit): NUL characters and lone surrogates in
    strings and keys, and nesting deeper than :data:`MAX_JSON_DEPTH`.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return JsonProblem(path, f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return JsonProblem(path, problem)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and (problem := _text_problem(key)):
                    return JsonProblem(path, f"a key {problem}")
                stack.append((inner, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((inner, f"{path}[{index}]", depth + 1) for index, inner in enumerate(item))
    return None


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``[]`` and ``{}`` are 1), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((inner, depth + 1) for inner in item.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(item, list | tuple):
            stack.extend((inner, depth + 1) for inner in item)
            deepest = max(deepest, depth + 1)
    return deepest


def _text_problem(text: str) -> str | None:
    """``contains a NUL character`` / ``contains an unpaired surrogate …``, or None."""
    try:
        storable(text, "")
    except InvalidValue as exc:
        return str(exc).strip()
    return None


def _name(character: str) -> str:
    names = {"\r": "CR", "\n": "LF", "\t": "TAB", "\x00": "NUL", "\u2028": "LINE SEPARATOR"}
    return names.get(character, f"U+{ord(character):04X}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
