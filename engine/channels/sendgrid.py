"""SendGrid's v3 Mail Send API: the request the ``sendgrid`` library builds, over kept-alive connections.

One request per message with one personalization: the recipient, the per-recipient
headers (``List-Unsubscribe`` and ``List-Unsubscribe-Post``, so Gmail and Yahoo offer
one-click unsubscribe, and our ``Message-ID``, which SendGrid keeps) and ``custom_args``
carrying ``delivery_id`` and ``campaign_id``, which SendGrid returns as top-level keys of
every webhook event, so events map back to the outbox row. The campaign is also the first
category (SendGrid's statistics group by category; at most 10 are kept). Content is
text/plain first, then text/html: SendGrid rejects the other order.

Answers: 2xx accepted; 429 :class:`RateLimited`; 5xx and 408 :class:`TransientFailure`;
401 and 403 :class:`ChannelSuspended` (a wrong, revoked or under-scoped key or a suspended
account fails every message alike); other 4xx :class:`PermanentFailure`.

Why not ``SendGridAPIClient.send``: its ``python_http_client`` builds a new urllib opener for
every request (ten handler objects, each inspected with ``dir()``, and a scan of the whole
environment for proxy variables) and opens a new TCP connection (against the real API, a
TLS handshake too) per message. Measured on loopback, one thread, 1,000 sends
(``bench/sendgrid_capacity.py``): 1,340 µs of client CPU per message through the library,
of which ~60 % is ``build_opener``, against ~320 µs over a kept-alive ``http.client``
connection. The dispatcher's threads share one GIL, so that CPU was its ceiling
(~700 msg/s at best). This module therefore sends the same request the library sends
(``POST {host}/v3/mail/send`` with its ``Authorization``, ``User-Agent``, ``Accept`` and
``Content-Type`` headers) through one kept-alive connection per thread, and classifies the
answer exactly as before. Proxies from the environment (``https_proxy``, ``no_proxy``), which
urllib honoured, are honoured here too, read once per channel.

A connection that the server closed while idle is noticed before it is reused (the socket
reads as ready); any error on a connection discards it. A request that fails after it was
sent is never repeated here: the dispatcher retries it later, as it did with urllib.

Threads: each thread has its own connection (:class:`~engine.channels.base.PerThread`);
``http.client`` connections are not safe to share.
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import sendgrid

from engine.channels.base import (
    CAMPAIGN_HEADER,
    DELIVERY_HEADER,
    ChannelSuspended,
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
from engine.channels.mime import message_id_for
from engine.message import EmailMessage, SendResult
from engine.settings import Settings

MAIL_SEND_PATH = "/v3/mail/send"
USER_AGENT = f"sendgrid/{sendgrid.__version__};python"  # what SendGridAPIClient sends
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
MESSAGE_ID_HEADER = "Message-ID"  # not reserved by SendGrid: it keeps ours (per personalization)


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
    per_recipient[MESSAGE_ID_HEADER] = message_id_for(message)
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


@dataclass(frozen=True, slots=True)
class _Route:
    """Where to connect for the API host: straight to it, or through an environment proxy."""

    scheme: str
    host: str
    port: int | None
    base_path: str
    proxy_host: str | None = None
    proxy_port: int | None = None
    proxy_auth: tuple[tuple[str, str], ...] = ()

    @classmethod
    def to(cls, url: str) -> _Route:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentFailure(f"TIDINGS_SENDGRID_HOST must be an http(s) URL, not {url!r}")
        route = cls(parts.scheme, parts.hostname, parts.port, parts.path.rstrip("/"))
        proxy_url = urllib.request.getproxies().get(parts.scheme)
        if not proxy_url or urllib.request.proxy_bypass(parts.hostname):
            return route
        proxy = urllib.parse.urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
        if not proxy.hostname:
            return route
        auth: tuple[tuple[str, str], ...] = ()
        if proxy.username is not None:
            user = urllib.parse.unquote(proxy.username)
            password = urllib.parse.unquote(proxy.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            auth = (("Proxy-Authorization", f"Basic {token}"),)
        return cls(route.scheme, route.host, route.port, route.base_path, proxy.hostname, proxy.port, auth)

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        """A new (not yet opened) connection; ``http.client`` opens it on the first request."""
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        if self.proxy_host is None:
            return kind(self.host, self.port, timeout=timeout)
        if self.scheme == "https":  # CONNECT through the proxy, then TLS with the API host
            connection = http.client.HTTPSConnection(self.proxy_host, self.proxy_port, timeout=timeout)
            connection.set_tunnel(self.host, self.port, headers=dict(self.proxy_auth))
            return connection
        return http.client.HTTPConnection(self.proxy_host, self.proxy_port, timeout=timeout)

    def target(self, path: str) -> str:
        """The request target: the path, or the absolute URL when talking to a plain HTTP proxy."""
        if self.proxy_host is not None and self.scheme == "http":
            port = f":{self.port}" if self.port else ""
            return f"http://{self.host}{port}{self.base_path}{path}"
        return self.base_path + path

    def request_headers(self) -> dict[str, str]:
        """Headers every request carries for the route (a plain HTTP proxy's credentials)."""
        return dict(self.proxy_auth) if self.proxy_host is not None and self.scheme == "http" else {}


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """True when an idle kept-alive socket became readable: the server closed it (or broke protocol).

    ``poll``, not ``select``: a process with more than 1,024 open files has descriptors that
    ``select`` refuses."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class SendGridChannel:
    """Sends to ``POST {host}/v3/mail/send`` with a timeout; safe from many threads."""

    name = "sendgrid"

    def __init__(self, api_key: str, *, host: str, timeout: float, now: Now = system_now) -> None:
        self._api_key = api_key
        self.host = host.rstrip("/")
        self.timeout = timeout
        self._now = now
        self._route = _Route.to(self.host)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
            **self._route.request_headers(),
        }
        self._target = self._route.target(MAIL_SEND_PATH)
        self._connections: PerThread[http.client.HTTPConnection] = PerThread(
            lambda: self._route.connect(self.timeout), closer=lambda connection: connection.close()
        )

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

    def send(self, message: EmailMessage) -> SendResult:
        data = json.dumps(mail_body(message)).encode("utf-8")
        try:
            answer = self._post(data)
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            self._connections.discard()  # in an unknown state: the next message opens a new one
            raise TransientFailure(self._reason(f"SendGrid unreachable: {_describe_io(exc)}")) from None
        if not 200 <= answer.status < 300:
            raise self._classify(answer)
        return SendResult(
            provider_message_id=answer.headers.get("X-Message-Id"),
            accepted_at=self._now(),
            detail=str(answer.status),
        )

    def _post(self, data: bytes) -> _Answer:
        connection = self._connections.get()
        if _closed_by_peer(connection):
            connection.close()  # http.client reopens it on the next request
        connection.request("POST", self._target, body=data, headers=self._headers)
        response = connection.getresponse()
        body = response.read()  # read it all, so the connection is ready for the next request
        return _Answer(response.status, response.reason, response.headers, body)

    def _classify(self, answer: _Answer) -> Exception:
        status = answer.status
        headers = answer.headers
        said = _provider_messages(answer.body) or answer.reason
        reason = self._reason(f"SendGrid {status}: {said}" if said else f"SendGrid {status}")
        if status == 429:
            retry_after, reset_at = rate_limit_hint(
                self._now(),
                retry_after=headers.get("Retry-After"),
                reset_epoch=headers.get("X-RateLimit-Reset"),
            )
            return RateLimited(reason, retry_after, reset_at)
        if status >= 500 or status == 408 or status < 400:
            retry_after, _ = rate_limit_hint(self._now(), retry_after=headers.get("Retry-After"))
            return TransientFailure(reason, retry_after)
        if status in (401, 403):
            # A wrong, revoked or under-scoped key, or a suspended account: every message gets this.
            return ChannelSuspended(reason)
        return PermanentFailure(reason)

    def _reason(self, text: str) -> str:
        return one_line(text, [self._api_key])

    def close(self) -> None:
        """Close every thread's connection."""
        self._connections.close_all()


def _describe_io(exc: BaseException) -> str:
    """A short text for a network failure (``timed out``, ``ConnectionRefusedError: …``)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
