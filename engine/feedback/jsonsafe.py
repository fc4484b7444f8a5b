"""JSON from the outside, made safe to store on SQLite and PostgreSQL alike.

Python's ``json`` accepts ``NaN`` and ``Infinity``, strings with NUL characters and
escaped lone surrogates (``"\\ud800"``); PostgreSQL's JSONB and text columns reject all
three, which would turn a stranger's odd request into a 500. Parse strictly here,
once, for every public endpoint.
"""

from __future__ import annotations

import json
from typing import Any


class UnsafeJSON(ValueError):
    """The body is not JSON we can store."""


def _no_constants(name: str) -> Any:
    raise UnsafeJSON(f"{name} is not valid JSON")


def loads(body: bytes | str) -> Any:
    """Parse JSON, refusing NaN/Infinity and NUL characters anywhere."""
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except UnsafeJSON:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UnsafeJSON("the body is not valid JSON") from None
    if _has_unstorable(data):
        raise UnsafeJSON("strings must not contain NUL characters or lone surrogates")
    return data


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _has_unstorable(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _unstorable(item):
                return True
        elif isinstance(item, dict):
            for key, inner in item.items():
                if _unstorable(key):
                    return True
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return False
