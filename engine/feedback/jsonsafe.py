"""JSON from the outside, parsed strictly, and made safe to store on SQLite and PostgreSQL alike.

Python's ``json`` accepts ``NaN`` and ``Infinity``, strings with NUL characters and
escaped lone surrogates (``"\\ud800"``), and nests as deep as its recursion allows (about
1,000 levels, past which it raises ``RecursionError``); PostgreSQL's JSONB and text columns
reject the first three, which would turn a stranger's odd request into a 500. :func:`parse`
refuses the constants and an over-deep body; :func:`loads` also refuses any unstorable string
or nesting past :data:`~engine.inbound.MAX_JSON_DEPTH` anywhere in the body, for endpoints
that take a body whole (the SendGrid webhook). The events API parses with :func:`parse` and
checks each event on its own, so one bad event does not cost the others.
"""

from __future__ import annotations

import json
from typing import Any

from engine.inbound import unstorable_json


class UnsafeJSON(ValueError):
    """The body is not JSON we can store."""


def _no_constants(name: str) -> Any:
    raise UnsafeJSON(f"{name} is not valid JSON")


def parse(body: bytes | str) -> Any:
    """Parse JSON, refusing NaN/Infinity and a body nested deeper than the parser can read."""
    try:
        return json.loads(body, parse_constant=_no_constants)
    except UnsafeJSON:
        raise
    except RecursionError:
        raise UnsafeJSON("the body is nested too deeply to read") from None
    except (UnicodeDecodeError, ValueError):
        raise UnsafeJSON("the body is not valid JSON") from None


def loads(body: bytes | str) -> Any:
    """Parse JSON, refusing NaN/Infinity, NUL characters, lone surrogates and over-deep nesting anywhere."""
    data = parse(body)
    problem = unstorable_json(data)
    if problem:
        raise UnsafeJSON(str(problem))
    return data
