"""SendGrid's v3 Mail Send API through the official ``sendgrid`` library.

One request per message with one personalization: the recipient, the per-recipient
headers (``List-Unsubscribe`` and ``List-Unsubscribe-Post``, so Gmail and Yahoo offer
one-click unsubscribe) and ``custom_args`` carrying ``delivery_id`` and ``campaign_id``,
which SendGrid returns as top-level keys of every webhook event, so events map back to
the outbox row. The campaign is also the first category (SendGrid's statistics group by
category; at most 10 are kept). Content is text/plain first, then text/html: SendGrid
rejects the other order.

Threads: ``python_http_client.Client`` keeps its request headers in one dict that every
call mutates (``setdefault("Content-Type")``, ``request_headers=`` merges) while urllib
copies it into the request, and ``.version()`` rewrites the client in place; sharing one
client between the dispatcher's threads can therefore fail with "dictionary changed size
during iteration" or send another call's headers. Each thread gets its own client
(:class:`~engine.channels.base.PerThread`); they are cheap, since urllib opens a new
connection per request anyway.

Throughput: urllib keeps no connection alive, so every message pays a TCP handshake (and,
against the real API, a TLS one). ``bench/sendgrid_capacity.py`` measured on loopback
(2 busy cores, 16 threads): this channel reached 0.93x the server's keep-alive capacity
(302 vs 326 msg/s with schema validation; ~1.0x, ~520 msg/s, without): the library is not
the limit there, and far above ``TIDINGS_EMAIL_RATE_PER_SECOND=100``. Over the internet
the per-message TLS handshake adds one to two round trips per message, which 16 threads
absorb up to roughly 16 / (3 RTT) messages per second; not measurable here.

Warning: at DEBUG level ``python_http_client`` logs the request headers, API key included.
``engine.logs`` redacts configured secrets from every record; keep that filter installed.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
from typing import Any

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from engine.channels.base import (
    CAMPAIGN_HEADER,
    DELIVERY_HEADER,
    Now,
    PermanentFailure,
    PerThread,
    RateLimited,
    TransientFailure,
    check_address,
    header,
    one_line,
    rate_limit_hint,
    system_now,
)
from engine.message import EmailMessage, SendResult
from engine.settings import Settings

MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_CUSTOM_ARGS_BYTES = 10_000
# Headers SendGrid sets itself and refuses in ``headers`` (its docs list them), plus ours that have fields.
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
        "message-id",
        "date",
        "mime-version",
    }
)
PER_RECIPIENT_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


def mail_body(message: EmailMessage) -> dict[str, Any]:
    """The Mail Send v3 JSON for one message; :class:`PermanentFailure` if it can never be valid."""
    recipient: dict[str, str] = {"email": check_address(message.to_email)}
    if message.to_name:
        recipient["name"] = message.to_name
    personalization: dict[str, Any] = {"to": [recipient]}

    per_recipient: dict[str, str] = {}
    general: dict[str, str] = {}
    for name, value in message.headers.items():
        key = name.lower()
        if key in RESERVED_HEADERS:
            continue
        if "\n" in value or "\r" in value:
            raise PermanentFailure(f"invalid header {name}: line breaks are not allowed")
        (per_recipient if key in PER_RECIPIENT_HEADERS else general)[name] = value
    if per_recipient:
        personalization["headers"] = per_recipient

    custom_args = {str(key): str(value) for key, value in message.custom_args.items()}
    delivery = header(message.headers, DELIVERY_HEADER)
    campaign = header(message.headers, CAMPAIGN_HEADER)
    if delivery:
        custom_args.setdefault("delivery_id", delivery)
    if campaign:
        custom_args.setdefault("campaign_id", campaign)
    if custom_args:
        if len(json.dumps(custom_args).encode("utf-8")) >= MAX_CUSTOM_ARGS_BYTES:
            raise PermanentFailure(f"custom_args exceed SendGrid's {MAX_CUSTOM_ARGS_BYTES} bytes")
        personalization["custom_args"] = custom_args

    sender: dict[str, str] = {"email": check_address(message.from_email, "sender")}
    if message.from_name:
        sender["name"] = message.from_name
    content = [
        {"type": kind, "value": value}
        for kind, value in (("text/plain", message.text), ("text/html", message.html))
        if value
    ]
    if not content:
        raise PermanentFailure("the message has neither a text nor an HTML part")
    body: dict[str, Any] = {
        "personalizations": [personalization],
        "from": sender,
        "subject": message.subject,
        "content": content,
    }
    if message.reply_to:
        body["reply_to"] = {"email": check_address(message.reply_to, "reply-to")}
    categories: list[str] = []
    for category in (campaign, *message.categories):
        if category and category[:MAX_CATEGORY_LENGTH] not in categories:
            categories.append(category[:MAX_CATEGORY_LENGTH])
    if categories:
        body["categories"] = categories[:MAX_CATEGORIES]
    if general:
        body["headers"] = general
    return body


def _provider_messages(body: bytes | str | None) -> str:
    """SendGrid's ``errors[].message`` (with the field when named), else the start of the raw body."""
    if not body:
        return ""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        document = json.loads(raw)
    except ValueError:
        return raw[:200]
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return raw[:200]
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        message = str(error.get("message") or "").strip()
        field = error.get("field")
        if field and field != "null":
            message = f"{field}: {message}"
        if message:
            parts.append(message)
    return "; ".join(parts) or raw[:200]


class SendGridChannel:
    """Sends through ``SendGridAPIClient(api_key, host=...)`` with a timeout; safe from many threads."""

    name = "sendgrid"

    def __init__(self, api_key: str, *, host: str, timeout: float, now: Now = system_now) -> None:
        self._api_key = api_key
        self.host = host.rstrip("/")  # python_http_client joins with "/v3/...": no double slash
        self.timeout = timeout
        self._now = now
        self._clients: PerThread[SendGridAPIClient] = PerThread(self._new_client)

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Now = system_now) -> SendGridChannel:
        if settings.sendgrid_api_key is None:
            raise PermanentFailure("TIDINGS_SENDGRID_API_KEY is not set")
        return cls(
            settings.sendgrid_api_key.get_secret_value(),
            host=str(settings.sendgrid_host),
            timeout=settings.sendgrid_timeout_seconds,
            now=now,
        )

    def _new_client(self) -> SendGridAPIClient:
        client = SendGridAPIClient(api_key=self._api_key, host=self.host)
        client.client.timeout = self.timeout  # propagated to every chained call; the default is none
        return client

    def send(self, message: EmailMessage) -> SendResult:
        body = mail_body(message)
        try:
            response = self._clients.get().send(body)
        except http_errors.HTTPError as exc:
            raise self._classify(exc) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise TransientFailure(self._reason(f"SendGrid unreachable: {_describe_io(exc)}")) from None
        message_id = response.headers.get("X-Message-Id") if response.headers is not None else None
        return SendResult(
            provider_message_id=message_id, accepted_at=self._now(), detail=str(response.status_code)
        )

    def _classify(self, exc: http_errors.HTTPError) -> Exception:
        status = int(getattr(exc, "status_code", 0) or 0)
        headers = getattr(exc, "headers", None)
        said = _provider_messages(getattr(exc, "body", None)) or str(getattr(exc, "reason", "") or "")
        reason = self._reason(f"SendGrid {status}: {said}" if said else f"SendGrid {status}")
        if status == 429:
            retry_after, reset_at = rate_limit_hint(
                self._now(),
                retry_after=headers.get("Retry-After") if headers is not None else None,
                reset_epoch=headers.get("X-RateLimit-Reset") if headers is not None else None,
            )
            return RateLimited(reason, retry_after, reset_at)
        if status >= 500 or status == 408 or status < 400:
            retry_after, _ = rate_limit_hint(
                self._now(), retry_after=headers.get("Retry-After") if headers is not None else None
            )
            return TransientFailure(reason, retry_after)
        return PermanentFailure(reason)

    def _reason(self, text: str) -> str:
        return one_line(text, [self._api_key])

    def close(self) -> None:
        """Forget every thread's client (urllib holds no connection between requests)."""
        self._clients.close_all()


def _describe_io(exc: BaseException) -> str:
    """A short text for a network failure: urllib wraps the socket error in ``reason``."""
    inner = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.URLError) and inner is not None:
        exc = inner if isinstance(inner, BaseException) else exc
        if not isinstance(inner, BaseException):
            return str(inner)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
