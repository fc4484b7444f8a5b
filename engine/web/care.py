"""``POST /care/goodwill``: a help desk gives a customer a coupon, and the apology goes out at once.

The request is JSON ``{email, percent, reason, order_id?, agent?}`` with ``Authorization: Bearer
TIDINGS_CARE_TOKEN``. Answers, in the order they are checked:

* 503 — no ``TIDINGS_CARE_TOKEN`` is set: the endpoint is off;
* 401 — a missing or wrong bearer token (constant-time comparison);
* 413 — a body over 16 KB; 400 — a body that is not JSON;
* 422 — ``{error, errors: [{field, message}]}``: a missing or malformed field, a percent over
  ``TIDINGS_CARE_MAX_PERCENT``, an unknown customer or order, an ``Idempotency-Key`` reused for
  a different request;
* 201 — ``{coupon: {code, percent, expires_at}, contact, order_id, issued_by, reason, message:
  {delivery_id, template, state}, repeated: false}``; 200 with the same body (``repeated: true``,
  header ``Idempotent-Replayed: true``) when an ``Idempotency-Key`` seen before is sent again.

Who gave the coupon is recorded as the token's label (``TIDINGS_CARE_TOKEN_LABEL``), with the
help desk's ``agent`` name when the body gives one: ``care-api (Kadri)``. Idempotency keys are
kept per label. The message is an outbox row due now; the daemon's dispatcher (``tidings run``)
sends it within its tick (:mod:`engine.runtime.goodwill`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from engine.clock import Clock
from engine.feedback import jsonsafe
from engine.runtime.goodwill import GoodwillRefused, GoodwillRequest, give_goodwill
from engine.settings import Settings
from engine.web.api_guard import guarded_json
from engine.workspace.loader import Workspace

MAX_BODY = 16 * 1024
KEY_HEADER = "Idempotency-Key"
KEY_MAX = 200

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["email", "percent", "reason"],
                    "properties": {
                        "email": {"type": "string"},
                        "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                        "reason": {"type": "string"},
                        "order_id": {"type": "string"},
                        "agent": {"type": "string"},
                    },
                }
            }
        },
    }
}


class GoodwillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=320)]
    percent: Annotated[Decimal, Field(allow_inf_nan=False)]
    reason: Annotated[str, Field(max_length=2000)]
    order_id: Annotated[str, Field(max_length=2000)] | None = None
    agent: Annotated[str, Field(max_length=100)] | None = None


def _refusal(field: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "errors": [{"field": field, "message": message}]}, status_code=422)


def add_care_routes(
    app: FastAPI,
    settings: Settings,
    engine: Engine,
    clock: Clock,
    workspace: Callable[[], Workspace],
) -> None:
    """Register ``POST /care/goodwill`` on the public app (see the module docstring)."""
    token = settings.care_token.get_secret_value().encode() if settings.care_token else None
    label = settings.care_token_label

    @app.post("/care/goodwill", summary="Customer care: give a goodwill coupon", openapi_extra=_BODY)
    async def goodwill(request: Request) -> Response:
        guarded = await guarded_json(
            request,
            token,
            setting="TIDINGS_CARE_TOKEN",
            what="care API",
            limit=MAX_BODY,
            parse=jsonsafe.loads,
        )
        if guarded.refusal is not None:
            return guarded.refusal
        payload = guarded.payload
        if not isinstance(payload, dict):
            return _refusal("(body)", "expected a JSON object {email, percent, reason, order_id?}")
        try:
            data = GoodwillIn.model_validate(payload)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                for e in exc.errors()[:20]
            ]
            return JSONResponse({"error": "invalid request", "errors": errors}, status_code=422)
        key = request.headers.get(KEY_HEADER)
        if key is not None:
            key = key.strip()
            if not key or len(key) > KEY_MAX or not key.isprintable():
                return _refusal(
                    "idempotency_key", f"{KEY_HEADER} must be 1 to {KEY_MAX} printable characters"
                )
        agent = f"{label} ({' '.join(data.agent.split())})" if data.agent and data.agent.strip() else label
        wanted = GoodwillRequest(
            email=data.email,
            percent=data.percent,
            reason=data.reason,
            agent=agent,
            order_id=data.order_id,
            request_key=f"{label}:{key}" if key is not None else None,
        )
        try:
            given_coupon = await run_in_threadpool(
                give_goodwill, engine, workspace(), settings, wanted, now=clock.now()
            )
        except GoodwillRefused as exc:
            return _refusal(exc.field, str(exc))
        headers = {"Cache-Control": "no-store"}
        if given_coupon.repeated:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(
            given_coupon.as_dict(), status_code=200 if given_coupon.repeated else 201, headers=headers
        )


__all__ = ["add_care_routes"]
