"""What the public app's machine endpoints check first: a bearer token, and a body of bounded size.

``POST /events`` (the shop) and ``POST /care/goodwill`` (a help desk) are called by programs with a
shared secret. Both answer the same way: 503 naming the setting when no token is configured (the
endpoint is off, not open), 401 with ``WWW-Authenticate: Bearer`` for a missing or wrong token,
compared in constant time (``hmac.compare_digest``: the answer's timing does not tell a guesser
how much of the token was right). Bodies are read with a limit checked while reading, so a huge
upload is refused before it is held in memory.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse


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


__all__ = ["bearer_refusal", "read_body"]
