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

import itertools
import json
import os
import secrets
import threading
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
from engine.channels.mime import message_bytes, message_id_for
from engine.message import EmailMessage, SendResult, SocialPost
from engine.settings import Settings

_TEMPORARY_SERIAL = itertools.count()  # next() on it is atomic under the GIL: safe across threads
_TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)


def write_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    ``durable``: the data is flushed to disk (``fsync``) before the rename, so after a power
    loss a file that exists is whole. Without it the write is just as atomic for readers and
    for a crash of the process, not for a crash of the machine.

    The temporary name is unique per process, thread and write (a dot-file, which listings
    skip): ``tempfile.mkstemp`` plus a ``mkdir`` on every call cost three times the write
    itself, a third of a season simulation's sending time. The folder is created by the
    first write that finds it missing.
    """
    serial = next(_TEMPORARY_SERIAL)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{serial}.tmp")
    try:
        fd = os.open(temporary, _TEMPORARY_FLAGS, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, _TEMPORARY_FLAGS, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class _Files:
    """Naming and writing shared by both outbox channels."""

    def __init__(self, folder: Path, now: Now, durable: bool) -> None:
        self.folder = folder
        self.now = now
        self.durable = durable

    def name_for(self, headers: dict[str, str], suffix: str) -> Path:
        delivery = header(headers, DELIVERY_HEADER)
        if delivery and delivery.strip():
            stem = safe_token(delivery.strip())
        else:
            stem = f"{self.now().strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"
        return self.folder / f"{stem}{suffix}"

    def write(self, path: Path, data: bytes) -> None:
        try:
            write_atomically(path, data, durable=self.durable)
        except OSError as exc:
            # A full disk or a permission problem may be fixed by an operator: retry later.
            raise TransientFailure(f"cannot write {path}: {exc.strerror or exc}") from None


class OutboxEmailChannel:
    """Writes each email as ``OUTBOX/email/<delivery>.eml``; the provider id is the ``Message-ID``.

    ``durable=False`` skips the ``fsync`` of every file (see :func:`write_atomically`): for
    scratch output such as a season simulation's outbox, where waiting for the disk was a
    fifth of the 5,000-contact season's wall time and a power loss loses the whole run anyway.
    """

    name = "outbox"

    def __init__(self, folder: Path, *, now: Now = system_now, durable: bool = True) -> None:
        self._files = _Files(folder, now, durable)
        self.folder = folder

    @classmethod
    def from_settings(
        cls, settings: Settings, *, now: Now = system_now, durable: bool = True
    ) -> OutboxEmailChannel:
        return cls(settings.outbox_path / "email", now=now, durable=durable)

    def send(self, message: EmailMessage) -> SendResult:
        accepted_at = self._files.now()
        message_id = message_id_for(message)
        data = message_bytes(message, message_id=message_id, date=accepted_at)
        path = self._files.name_for(message.headers, ".eml")
        self._files.write(path, data)
        return SendResult(provider_message_id=message_id, accepted_at=accepted_at, detail=str(path))

    def close(self) -> None:
        """Nothing is held open between messages."""


class OutboxSocialChannel:
    """Writes each post as ``OUTBOX/social/<delivery>.json``.

    The object holds ``text``, ``channel``, ``campaign``, ``posted_at`` (ISO 8601, UTC),
    ``delivery`` and the post's headers; the provider id is ``outbox:<file stem>``.
    """

    name = "outbox"

    def __init__(self, folder: Path, *, now: Now = system_now, durable: bool = True) -> None:
        self._files = _Files(folder, now, durable)
        self.folder = folder

    @classmethod
    def from_settings(
        cls, settings: Settings, *, now: Now = system_now, durable: bool = True
    ) -> OutboxSocialChannel:
        return cls(settings.outbox_path / "social", now=now, durable=durable)

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
