"""Channels: one small protocol per kind of message, one backend per provider.

``base`` says what a channel is and how failures are classified; ``outbox``,
``sendgrid``, ``smtp`` and ``x`` implement it; ``factory`` picks one from settings.
Backends import their client library lazily (through the factory), so the file outbox
works without loading ``sendgrid`` or ``tweepy``.
"""

from engine.channels.base import (
    ChannelError,
    ChannelSuspended,
    DuplicatePost,
    EmailChannel,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    SocialChannel,
    TransientFailure,
)
from engine.channels.factory import email_channel_for, social_channel_for

__all__ = [
    "ChannelError",
    "ChannelSuspended",
    "DuplicatePost",
    "EmailChannel",
    "OutcomeUnknown",
    "PermanentFailure",
    "RateLimited",
    "SocialChannel",
    "TransientFailure",
    "email_channel_for",
    "social_channel_for",
]
