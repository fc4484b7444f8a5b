"""The one place that knows which channel ``TIDINGS_EMAIL_CHANNEL`` / ``TIDINGS_SOCIAL_CHANNEL`` name.

Everything else in the engine holds an :class:`EmailChannel` or :class:`SocialChannel`
and never asks which backend it is. Pass the engine's clock (``now=clock.now``) so the
times channels report (accepted_at, the outbox's ``Date`` and ``posted_at``) follow a
simulated or fake clock too.
"""

from __future__ import annotations

from engine.channels.base import EmailChannel, Now, SocialChannel, system_now
from engine.settings import EmailChannelKind, Settings, SocialChannelKind


def email_channel_for(settings: Settings, *, now: Now = system_now) -> EmailChannel:
    """The configured email channel: the file outbox (default), SendGrid or SMTP."""
    kind = settings.email_channel
    if kind is EmailChannelKind.sendgrid:
        from engine.channels.sendgrid import SendGridChannel

        return SendGridChannel.from_settings(settings, now=now)
    if kind is EmailChannelKind.smtp:
        from engine.channels.smtp import SmtpChannel

        return SmtpChannel.from_settings(settings, now=now)
    from engine.channels.outbox import OutboxEmailChannel

    return OutboxEmailChannel.from_settings(settings, now=now)


def social_channel_for(settings: Settings, *, now: Now = system_now) -> SocialChannel:
    """The configured social channel: the file outbox (default) or X."""
    if settings.social_channel is SocialChannelKind.x:
        from engine.channels.x import XChannel

        return XChannel.from_settings(settings, now=now)
    from engine.channels.outbox import OutboxSocialChannel

    return OutboxSocialChannel.from_settings(settings, now=now)
