"""What a channel sends: plain values, produced by the renderer and shown by the preview.

They live below both ``render`` and ``channels`` so that neither needs the other.
"""

from __future__ import annotations

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
