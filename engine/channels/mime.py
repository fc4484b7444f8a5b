"""RFC 5322 messages from rendered emails, shared by the file outbox and SMTP.

Both write the same bytes a mailbox would receive: ``multipart/alternative`` with the
text part first and the HTML part last (clients show the last part they understand),
From/To/Subject/Date/Message-ID, and every header the renderer set (List-Unsubscribe,
List-Unsubscribe-Post, X-Tidings-*). Headers that describe the message structure are
the channel's to write and are never taken from the renderer's headers.
"""

from __future__ import annotations

import re
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, make_msgid

from engine.channels.base import DELIVERY_HEADER, PermanentFailure, check_address, header, safe_token
from engine.message import EmailMessage

# Written by the channel from the message's own fields, never copied from ``headers``.
STRUCTURAL_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field-name: printable ASCII except ':'


def sender_domain(message: EmailMessage) -> str:
    return message.from_email.rpartition("@")[2] or "localhost"


def message_id_for(message: EmailMessage) -> str:
    """The ``Message-ID``: the renderer's if it set one, else stable per delivery, else unique.

    Stable per delivery (``<tidings.DELIVERY@sender-domain>``) so that a retry after an
    ambiguous failure (a timeout after the server took the message) carries the same id,
    which mailbox providers use to drop the duplicate, and so that the file outbox's
    Message-ID is the same however often the delivery is written.
    """
    existing = header(message.headers, "Message-ID")
    if existing:
        return existing.strip()
    delivery = header(message.headers, DELIVERY_HEADER)
    if delivery:
        return f"<tidings.{safe_token(delivery.strip())}@{sender_domain(message)}>"
    return make_msgid("tidings", domain=sender_domain(message))


def build_mime(message: EmailMessage, *, message_id: str, date: datetime) -> MimeMessage:
    """The message as an RFC 5322 document; :class:`PermanentFailure` for an invalid address or header."""
    to_email = check_address(message.to_email)
    from_email = check_address(message.from_email, "sender")
    reply_to = check_address(message.reply_to, "reply-to") if message.reply_to else None
    mime = MimeMessage(policy=policy.SMTP)
    try:
        mime["From"] = Address(display_name=message.from_name or "", addr_spec=from_email)
        mime["To"] = Address(display_name=message.to_name or "", addr_spec=to_email)
        if reply_to:
            mime["Reply-To"] = Address(addr_spec=reply_to)
        mime["Subject"] = message.subject
        mime["Date"] = format_datetime(date)
        mime["Message-ID"] = message_id
        # Content-* headers go after the body is set: set_content() drops them and
        # add_alternative() moves them into the first part.
        later: list[tuple[str, str]] = []
        for name, value in message.headers.items():
            if name.lower() in STRUCTURAL_HEADERS:
                continue
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name[:60]!r}")
            if name.lower().startswith("content-"):
                later.append((name, value))
            else:
                mime[name] = value
    except (ValueError, IndexError, TypeError) as exc:
        # The email package refuses line breaks in values (header injection) and unparsable addresses.
        raise PermanentFailure(f"invalid header: {' '.join(str(exc).split())[:200]}") from None
    if message.text and message.html:
        mime.set_content(message.text, subtype="plain")
        mime.add_alternative(message.html, subtype="html")
    elif message.html:
        mime.set_content(message.html, subtype="html")
    elif message.text:
        mime.set_content(message.text, subtype="plain")
    else:
        raise PermanentFailure("the message has neither a text nor an HTML part")
    if message.locale and not any(name.lower() == "content-language" for name, _ in later):
        later.append(("Content-Language", message.locale))
    try:
        for name, value in later:
            mime[name] = value
    except (ValueError, TypeError) as exc:
        raise PermanentFailure(f"invalid header: {' '.join(str(exc).split())[:200]}") from None
    return mime
