"""The embedded default channel: files on disk instead of a provider.

Emails become RFC 5322 ``.eml`` files under ``OUTBOX/email/`` (open them in any mail
client, or parse them with ``email.parser``); posts become ``.json`` files under
``OUTBOX/social/``. Nothing to install or configure, and what a campaign would send can
be read before any real provider is connected.

Files are written atomically (a temporary file in the same folder, then ``os.replace``),
so a reader such as the preview's outbox page never sees half a message. A delivery's file
is named after its ``X-Tidings-Delivery`` id, so sending the same delivery again (a retry,
a resumed run) overwrites the file instead of adding a second one; a message without that
header (``tidings send-test``) gets a new, time-ordered name.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

from engine.channels.base import (
    CAMPAIGN_HEADER,
    DELIVERY_HEADER,
    Now,
    TransientFailure,
    header,
    safe_token,
    system_now,
)
from engine.channels.mime import build_mime, message_id_for
from engine.message import EmailMessage, SendResult, SocialPost
from engine.settings import Settings


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class _Files:
    """Naming shared by both outbox channels."""

    def __init__(self, folder: Path, now: Now) -> None:
        self.folder = folder
        self.now = now

    def name_for(self, headers: dict[str, str], suffix: str) -> Path:
        delivery = header(headers, DELIVERY_HEADER)
        if delivery and delivery.strip():
            stem = safe_token(delivery.strip())
        else:
            stem = f"{self.now().strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"
        return self.folder / f"{stem}{suffix}"

    def write(self, path: Path, data: bytes) -> None:
        try:
            write_atomically(path, data)
        except OSError as exc:
            # A full disk or a permission problem may be fixed by an operator: retry later.
            raise TransientFailure(f"cannot write {path}: {exc.strerror or exc}") from None


class OutboxEmailChannel:
    """Writes each email as ``OUTBOX/email/<delivery>.eml``; the provider id is the ``Message-ID``."""

    name = "outbox"

    def __init__(self, folder: Path, *, now: Now = system_now) -> None:
        self._files = _Files(folder, now)
        self.folder = folder

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Now = system_now) -> OutboxEmailChannel:
        return cls(settings.outbox_path / "email", now=now)

    def send(self, message: EmailMessage) -> SendResult:
        accepted_at = self._files.now()
        message_id = message_id_for(message)
        mime = build_mime(message, message_id=message_id, date=accepted_at)
        path = self._files.name_for(message.headers, ".eml")
        self._files.write(path, mime.as_bytes())
        return SendResult(provider_message_id=message_id, accepted_at=accepted_at, detail=str(path))

    def close(self) -> None:
        """Nothing is held open between messages."""


class OutboxSocialChannel:
    """Writes each post as ``OUTBOX/social/<delivery>.json``.

    The object holds ``text``, ``channel``, ``campaign``, ``posted_at`` (ISO 8601, UTC),
    ``delivery`` and the post's headers; the provider id is ``outbox:<file stem>``.
    """

    name = "outbox"

    def __init__(self, folder: Path, *, now: Now = system_now) -> None:
        self._files = _Files(folder, now)
        self.folder = folder

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Now = system_now) -> OutboxSocialChannel:
        return cls(settings.outbox_path / "social", now=now)

    def post(self, post: SocialPost) -> SendResult:
        posted_at = self._files.now()
        path = self._files.name_for(post.headers, ".json")
        document = {
            "text": post.text,
            "channel": post.channel,
            "campaign": post.campaign or header(post.headers, CAMPAIGN_HEADER),
            "delivery": header(post.headers, DELIVERY_HEADER),
            "posted_at": posted_at.isoformat(),
            "headers": dict(post.headers),
        }
        data = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
        self._files.write(path, data)
        return SendResult(provider_message_id=f"outbox:{path.stem}", accepted_at=posted_at, detail=str(path))

    def close(self) -> None:
        """Nothing is held open between posts."""
