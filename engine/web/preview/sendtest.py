"""The "send test" button: one rendered message to one address, through the configured email channel.

Guard rails, each for a reason:

* the address must be a single plain address (no display name, no comma list, no line
  breaks), so the form cannot become a header-injection or a mailing tool;
* the subject is prefixed ``[TEST]`` so nobody mistakes it for the real send;
* at most :data:`PER_MINUTE` tests per minute per server (a token bucket on the
  injected clock), so a stuck key or a loop in a script cannot burn the sending
  reputation; a refused test says when the next one is possible.

:func:`send_test` is the one implementation: the preview's button and ``tidings send-test``
both call it. The page answers its form with a redirect (POST-redirect-GET) to the template
page carrying a :class:`Notices` id, so reloading the page shows the outcome again and never
sends again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import secrets
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.clock import Clock
from engine.message import EmailMessage, SendResult
from engine.runtime.ratelimit import TokenBucket
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.web.preview.catalog import TemplateInfo
    from engine.web.preview.rendering import TemplatePreviews, ViewOptions

log = logging.getLogger(__name__)

PER_MINUTE = 5
SUBJECT_PREFIX = "[TEST] "
_ADDRESS = re.compile(
    r"[^@\s,;<>()\"']{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+"
)


class SendTestRefused(ValueError):
    """The test was not sent; ``status`` is the HTTP status the preview answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def checked_address(raw: str) -> str:
    address = raw.strip()
    if len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise SendTestRefused("enter one email address, like you@example.com", 400)
    return address


class SendTestLimiter:
    """:data:`PER_MINUTE` tests per minute, a burst of as many, refilled evenly."""

    def __init__(self, clock: Clock, per_minute: int = PER_MINUTE) -> None:
        self._bucket = TokenBucket(per_minute / 60.0, per_minute, clock)

    def acquire(self) -> None:
        if not self._bucket.try_take():
            wait = max(1, math.ceil(self._bucket.seconds_until()))
            raise SendTestRefused(
                f"test sends are limited to {PER_MINUTE} a minute; try again in {wait} s", 429
            )


def as_test(message: EmailMessage, to_email: str) -> EmailMessage:
    """The same message, addressed to the tester and marked as a test."""
    headers = dict(message.headers)
    headers["X-Tidings-Test"] = "1"
    return dataclasses.replace(
        message, to_email=to_email, to_name=None, subject=SUBJECT_PREFIX + message.subject, headers=headers
    )


def send_through_channel(settings: Settings, clock: Clock, message: EmailMessage) -> tuple[str, SendResult]:
    """Send with the channel ``TIDINGS_EMAIL_CHANNEL`` names; returns the channel's name and its result.

    A refusal by the provider raises the channel's classified error (its text is one
    line and free of secrets); the caller shows it.
    """
    from engine.channels import email_channel_for

    channel = email_channel_for(settings, now=clock.now)
    try:
        result = channel.send(message)
    finally:
        channel.close()
    return str(getattr(channel, "name", settings.email_channel.value)), result


@dataclasses.dataclass(frozen=True, slots=True)
class SendTestOutcome:
    """What became of one test: ``status`` is the HTTP status the preview answers with."""

    ok: bool
    message: str
    status: int
    channel: str | None = None
    provider_message_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "message": self.message}
        if self.ok:
            data.update({"channel": self.channel, "provider_message_id": self.provider_message_id})
        return data


def send_test(
    settings: Settings,
    clock: Clock,
    previews: TemplatePreviews,
    info: TemplateInfo | None,
    name: str,
    to: str,
    options: ViewOptions,
    *,
    limiter: SendTestLimiter | None = None,
) -> SendTestOutcome:
    """Render ``info`` as the preview shows it (locale, sample or contact); send it, [TEST], to ``to``."""
    from engine.channels import ChannelError

    if info is None:
        return SendTestOutcome(False, f"no template {name!r}", 404)
    if info.kind != "email":
        return SendTestOutcome(False, "only email templates can be sent as a test", 400)
    try:
        address = checked_address(to)
        result = previews.render(info, options)
        if result.error is not None or result.message is None:
            raise SendTestRefused(f"not sent: the template does not render: {result.error}", 422)
        if limiter is not None:
            limiter.acquire()
        channel, sent = send_through_channel(settings, clock, as_test(result.message, address))
    except SendTestRefused as exc:
        return SendTestOutcome(False, str(exc), exc.status)
    except ChannelError as exc:
        return SendTestOutcome(
            False, f"the {settings.email_channel.value} channel refused: {exc.reason}", 502
        )
    log.info("test of %s sent to %s through %s", name, address, channel)
    detail = f" (id {sent.provider_message_id})" if sent.provider_message_id else ""
    return SendTestOutcome(
        True,
        f"Sent [TEST] {result.subject} to {address} through the {channel} channel{detail}.",
        200,
        channel,
        sent.provider_message_id,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # ok | error
    text: str
    send_to: str
    at: datetime


class Notices:
    """Outcomes of the page's tests, by a random id, for the page the form redirects to.

    Kept :data:`KEEP` on the injected clock and at most :data:`MAX_NOTICES` of them, so a
    reload shows the outcome again, and a stale or forged id shows nothing.
    """

    KEEP = timedelta(minutes=10)
    MAX_NOTICES = 200

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._items: OrderedDict[str, Notice] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, outcome: SendTestOutcome, send_to: str) -> str:
        key = secrets.token_urlsafe(12)
        notice = Notice("ok" if outcome.ok else "error", outcome.message, send_to, self.clock.now())
        with self._lock:
            self._items[key] = notice
            while len(self._items) > self.MAX_NOTICES:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> Notice | None:
        with self._lock:
            notice = self._items.get(key)
        if notice is None or self.clock.now() - notice.at > self.KEEP:
            return None
        return notice
