"""A SendGrid-compatible ``POST /v3/mail/send`` on 127.0.0.1, strict the way the real API is.

It checks the bearer key (401), validates the JSON body against SendGrid's published
OpenAPI description (``tests/servers/specs/sendgrid-mail-v3.openapi.json``, request body
``#/components/requestBodies/PostMailSend``, resolved with the spec's components as the
root) and enforces the documented limits the schema cannot express. Valid requests get
202 with an ``X-Message-Id``; invalid ones 400 with SendGrid's error body shape
``{"errors": [{"message", "field", "help"}]}``; bodies of 30 MB or more get 413.

Validation is two-tier: a validator compiled by ``fastjsonschema`` answers "valid" for the
common case (~40 µs per message against ~270 µs for ``jsonschema``); only a body it refuses
goes through ``jsonschema``, whose first error (in path order) is the one reported, so the
status and message a body gets do not depend on which tier saw it. The compiled one reads
the schema as draft 7 (it has no 2020-12 mode), which can only make it stricter here (its
``email`` format is a real pattern, ``jsonschema``'s only looks for an ``@``): a body it
refuses that ``jsonschema`` accepts is accepted.

Faults (``server.faults``): script them (``server.faults.script(rate_limited(30))``)
or draw them at random (``server.faults.randomly(0.1, server_error(), seed=1)``).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from .httpbase import FakeHttpService, Fault, Reply, Request

SPEC_PATH = Path(
    os.environ.get("TIDINGS_SENDGRID_SPEC", Path(__file__).parent / "specs" / "sendgrid-mail-v3.openapi.json")
)
SPEC_URI = "urn:sendgrid:mail-v3-openapi"
REQUEST_SCHEMA_POINTER = "#/components/requestBodies/PostMailSend/content/application~1json/schema"

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD_SECONDS = 72 * 3600
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)

DUPLICATE_RECIPIENT = (
    "Each email address in the personalization block should be unique between to, cc, and bcc."
)

_validator_lock = threading.Lock()
_validator: Draft202012Validator | None = None
_fast_validator: Callable[[Any], Any] | None = None


def _specification() -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec document and its Mail Send request-body schema, patched to what the API accepts."""
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    body_schema = spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    # The spec types the top-level custom_args as a string, but the API (and the sendgrid
    # library's Mail helper) sends an object of string values: patch it to what is accepted.
    body_schema["properties"]["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}
    return spec, body_schema


def mail_send_validator() -> Draft202012Validator:
    """The request-body validator, built once from the spec file."""
    global _validator
    with _validator_lock:
        if _validator is None:
            spec, _ = _specification()
            registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
            _validator = Draft202012Validator(
                {"$ref": SPEC_URI + REQUEST_SCHEMA_POINTER},
                registry=registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
        return _validator


def fast_mail_send_check() -> Callable[[Any], Any]:
    """The same schema compiled to Python by ``fastjsonschema``: raises on an invalid body."""
    global _fast_validator
    with _validator_lock:
        if _fast_validator is None:
            spec, body_schema = _specification()
            # The body schema as the root, with the spec's components beside it, so that its
            # ``#/components/...`` references resolve as they do in the spec.
            root = {**body_schema, "components": spec["components"]}
            root["$schema"] = "http://json-schema.org/draft-07/schema#"
            _fast_validator = fastjsonschema.compile(root)
        return _fast_validator


def schema_errors(body: Any) -> list[Any]:
    """``jsonschema``'s errors for ``body`` in path order; none when the compiled check passes it."""
    try:
        fast_mail_send_check()(body)
    except fastjsonschema.JsonSchemaException:
        return sorted(mail_send_validator().iter_errors(body), key=lambda e: list(e.absolute_path))
    return []


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    """SendGrid's error shape."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


# --- ready-made faults ---------------------------------------------------------------------------


def rate_limited(retry_after: int | None = 60, reset_epoch: int | None = None) -> Fault:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if reset_epoch is not None:
        headers["X-RateLimit-Reset"] = str(reset_epoch)
        headers["X-RateLimit-Limit"] = "600"
        headers["X-RateLimit-Remaining"] = "0"
    return Fault(Reply(429, error_body("too many requests"), headers))


def server_error(status: int = 500) -> Fault:
    message = {500: "internal server error", 503: "service unavailable"}.get(status, "server error")
    return Fault(Reply(status, error_body(message)))


def bad_request(message: str = "invalid request", field: str | None = None) -> Fault:
    return Fault(Reply(400, error_body(message, field)))


def forbidden(message: str = "access forbidden") -> Fault:
    """403: a key without the mail.send scope, or a suspended account."""
    return Fault(Reply(403, error_body(message)))


def slow(seconds: float) -> Fault:
    """Wait ``seconds`` before answering normally (a client with a shorter timeout gives up)."""
    return Fault(None, delay=seconds)


@dataclass(frozen=True)
class AcceptedMail:
    """A message the server accepted: its id, the JSON body, the request headers, when (epoch seconds)."""

    message_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float = field(default_factory=time.time)


class SendGridServer(FakeHttpService):
    def __init__(
        self,
        api_key: str = "SG.test-key",
        *,
        now: Callable[[], float] = time.time,
        validate: bool = True,
        recording: bool = True,
    ) -> None:
        """``validate=False`` skips the body checks (auth stays): only for measuring transport speed.
        ``recording=False`` keeps no request and no accepted mail, only counts (benchmarks)."""
        super().__init__(recording=recording)
        self.api_key = api_key
        self.validate = validate
        self.now = now
        self._accepted: list[AcceptedMail] = []
        self._accepted_lock = threading.Lock()
        self._accepted_count = 0
        mail_send_validator()  # load the spec before the first request, in the caller's thread
        fast_mail_send_check()

    @property
    def host(self) -> str:
        """What to pass as ``SendGridAPIClient(host=...)`` / ``TIDINGS_SENDGRID_HOST``."""
        return self.url

    @property
    def accepted(self) -> list[AcceptedMail]:
        with self._accepted_lock:
            return list(self._accepted)

    @property
    def accepted_count(self) -> int:
        """How many messages were accepted, recorded or not."""
        with self._accepted_lock:
            return self._accepted_count

    def handle(self, request: Request) -> Reply:
        if request.path.split("?")[0].rstrip("/") != "/v3/mail/send":
            return Reply(404, error_body("not found"))
        if request.method != "POST":
            return Reply(405, error_body("method not allowed"))
        authorization = request.header("Authorization")
        if not authorization:
            return Reply(401, error_body("authorization required"))
        if authorization != f"Bearer {self.api_key}":
            return Reply(401, error_body("The provided authorization grant is invalid, expired, or revoked"))
        if len(request.body) >= MAX_BODY_BYTES:
            return Reply(413, error_body("content too large"))
        try:
            body = json.loads(request.body)
        except ValueError:
            return Reply(400, error_body("Bad Request"))
        problem = self.problem(body) if self.validate else None
        if problem is not None:
            return Reply(400, error_body(*problem))
        message_id = secrets.token_urlsafe(16)
        with self._accepted_lock:
            self._accepted_count += 1
            if self.recording:
                self._accepted.append(AcceptedMail(message_id, body, dict(request.headers)))
        return Reply(202, None, {"X-Message-Id": message_id})

    def problem(self, body: Any) -> tuple[str, str | None] | None:
        """The first reason SendGrid would refuse ``body``, as (message, field), or None."""
        errors = schema_errors(body)
        if errors:
            first = errors[0]
            field = ".".join(str(part) for part in first.absolute_path) or None
            return first.message, field
        personalizations = body["personalizations"]
        if not personalizations:
            return "The personalizations field is required and must have at least one personalization.", (
                "personalizations"
            )
        recipients = 0
        for index, item in enumerate(personalizations):
            addresses = [r["email"].lower() for kind in ("to", "cc", "bcc") for r in item.get(kind, [])]
            recipients += len(addresses)
            if len(set(addresses)) != len(addresses):
                return DUPLICATE_RECIPIENT, f"personalizations.{index}"
            problem = self._common(item, f"personalizations.{index}.")
            if problem:
                return problem
        if recipients > MAX_RECIPIENTS:
            return (
                f"The total number of recipients must be no more than {MAX_RECIPIENTS}.",
                "personalizations",
            )
        if "template_id" not in body and not body.get("content"):
            return "Unless a valid template_id is provided, the content parameter is required.", "content"
        kinds = [part["type"] for part in body.get("content", [])]
        if "text/plain" in kinds and kinds.index("text/plain") != 0:
            return "If present, text/plain must be first, followed by any other content.", "content"
        subject_missing = "subject" not in body and any("subject" not in item for item in personalizations)
        if subject_missing and "template_id" not in body:
            return "The subject is required.", "subject"
        if "reply_to" in body and "reply_to_list" in body:
            return "You can use either reply_to or reply_to_list, not both.", "reply_to"
        return self._common(body, "")

    def _common(self, part: dict[str, Any], prefix: str) -> tuple[str, str | None] | None:
        """Checks that apply to the message and to each personalization alike."""
        custom_args = part.get("custom_args")
        if custom_args is not None:
            if not all(isinstance(value, str) for value in custom_args.values()):
                return "Custom args values must be strings.", prefix + "custom_args"
            if len(json.dumps(custom_args).encode("utf-8")) >= MAX_CUSTOM_ARGS_BYTES:
                return f"custom_args must be less than {MAX_CUSTOM_ARGS_BYTES} bytes.", prefix + "custom_args"
        headers = part.get("headers") or {}
        for name, value in headers.items():
            if name.lower() in RESERVED_HEADERS:
                return f"The header {name} is reserved and cannot be set.", prefix + "headers"
            if not isinstance(value, str):
                return "Header values must be strings.", f"{prefix}headers.{name}"
        send_at = part.get("send_at")
        if send_at is not None and send_at > self.now() + MAX_SEND_AT_AHEAD_SECONDS:
            return "send_at cannot be more than 72 hours in the future.", prefix + "send_at"
        return None

    def reset(self) -> None:
        super().reset()
        with self._accepted_lock:
            self._accepted.clear()
            self._accepted_count = 0
