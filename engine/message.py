"""What a channel sends: plain values, produced by the renderer and shown by the preview.

They live below both ``render`` and ``channels`` so that neither needs the other.

Message-IDs: every email channel writes :attr:`EmailMessage.message_id` when the caller set
it, else a fresh :func:`new_message_id`. A Message-ID must be unique across every message
ever sent from the domain (RFC 5322 3.6.4): one built from the outbox row id alone repeats
as soon as a second database (staging, a reset, a second shop on the same domain) numbers
its rows from 1 again, and mailbox providers then thread or drop unrelated messages. So
the id is 128 random bits at the From domain. To make a retry recognisable, the caller
keeps one id per outbox row and passes it on every attempt.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """One rendered email for one recipient, ready for any email channel."""

    to_email: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str | None = None
    to_name: str | None = None
    reply_to: str | None = None
    preheader: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    locale: str | None = None
    categories: tuple[str, ...] = ()
    custom_args: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None
    """``<local@domain>``; None: the channel gives the message a fresh :func:`new_message_id`."""

    @property
    def size(self) -> int:
        """Bytes of the HTML part, the figure Gmail clips at (~102 KB)."""
        return len(self.html.encode("utf-8"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "preheader": self.preheader,
            "html": self.html,
            "text": self.text,
            "headers": dict(self.headers),
            "size": self.size,
            "locale": self.locale,
        }


def new_message_id(from_email: str) -> str:
    """A globally unique ``Message-ID``: 128 random bits at the sender's domain.

    >>> new_message_id("hello@shop.example.com")  # doctest: +SKIP
    '<tidings.3f9c0e4b7a1d4c2e9b8f6a5d4c3b2a19@shop.example.com>'
    """
    domain = from_email.rpartition("@")[2].strip() or "localhost"
    return f"<tidings.{secrets.token_hex(16)}@{domain}>"


@dataclass(frozen=True, slots=True)
class SocialPost:
    """One rendered social post (a broadcast: no recipient)."""

    text: str
    channel: str = "x"
    campaign: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a channel reports after accepting a message."""

    provider_message_id: str | None
    accepted_at: datetime | None = None
    detail: str | None = None
