"""What the public app's machine endpoints check first: a bearer token, a body of bounded size, its JSON.

``POST /events`` (the shop) and ``POST /care/goodwill`` (a help desk) are called by programs with a
shared secret. Both answer the same way: 503 naming the setting when no token is configured (the
endpoint is off, not open), 401 with ``WWW-Authenticate: Bearer`` for a missing or wrong token,
compared in constant time (``hmac.compare_digest``: the answer's timing does not tell a guesser
how much of the token was right). Bodies are read with a limit checked while reading, so a huge
upload is refused before it is held in memory (413); a body that is not JSON we accept is 400.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from engine.feedback.jsonsafe import UnsafeJSON


def bearer_refusal(request: Request, token: bytes | None, *, setting: str, what: str) -> JSONResponse | None:
    """The answer refusing this request (503 or 401), or None when its bearer token is right."""
    if token is None:
        return JSONResponse({"error": f"the {what} is disabled: set {setting}"}, status_code=503)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
        return JSONResponse(
            {"error": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


async def read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over ``limit`` bytes (checked while reading, not after)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Guarded:
    """A machine request past its first checks (``payload``), or the answer refusing it (``refusal``)."""

    payload: Any = None
    refusal: JSONResponse | None = None


async def guarded_json(
    request: Request,
    token: bytes | None,
    *,
    setting: str,
    what: str,
    limit: int,
    parse: Callable[[bytes], Any],
) -> Guarded:
    """The bearer check, the bounded body and its JSON (``parse``: one of :mod:`engine.feedback.jsonsafe`'s
    parsers, raising ``UnsafeJSON``), in that order; the first that refuses answers."""
    refused = bearer_refusal(request, token, setting=setting, what=what)
    if refused is not None:
        return Guarded(refusal=refused)
    body = await read_body(request, limit)
    if body is None:
        return Guarded(refusal=_error(413, f"request body too large (at most {limit} bytes)"))
    try:
        return Guarded(payload=parse(body))
    except UnsafeJSON as exc:
        return Guarded(refusal=_error(400, str(exc)))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


__all__ = ["Guarded", "bearer_refusal", "guarded_json", "read_body"]
