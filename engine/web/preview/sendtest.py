"""The "send test" button: one rendered message to one address, through the configured email channel.

Guard rails, each for a reason:

* the address must be a single plain address (no display name, no comma list, no line
  breaks), so the form cannot become a header-injection or a mailing tool;
* the subject is prefixed ``[TEST]`` so nobody mistakes it for the real send;
* at most :data:`PER_MINUTE` tests per minute per server (a token bucket on the
  injected clock), so a stuck key or a loop in a script cannot burn the sending
  reputation; a refused test says when the next one is possible.
"""

from __future__ import annotations

import dataclasses
import math
import re

from engine.clock import Clock
from engine.message import EmailMessage, SendResult
from engine.runtime.ratelimit import TokenBucket
from engine.settings import Settings

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
