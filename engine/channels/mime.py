"""RFC 5322 messages from rendered emails, shared by the file outbox and SMTP.

Both write the same bytes a mailbox would receive: ``multipart/alternative`` with the
text part first and the HTML part last (clients show the last part they understand),
From/To/Subject/Date/Message-ID, and every header the renderer set (List-Unsubscribe,
List-Unsubscribe-Post, X-Tidings-*). Headers that describe the message structure are
the channel's to write and are never taken from the renderer's headers.

Two writers produce those bytes:

* :func:`message_bytes`, the one channels call, writes our one message shape directly:
  headers folded at 78 characters on whitespace, non-ASCII subjects and display names as
  RFC 2047 ``=?utf-8?b?…?=`` words cut on character boundaries, both bodies UTF-8
  quoted-printable (``binascii.b2a_qp``, in C), CRLF line endings. About 0.25 ms for
  a typical 14 KB message against 4.2 ms through the ``email`` package, which was more
  than half of a season simulation's CPU time (``bench/mime.py``); most of what is
  left is ``b2a_qp`` itself.
* :func:`build_mime`, the ``email`` package's writer, for whatever the direct writer
  does not take on (an address that is not a plain dot-atom, a structured header such as
  ``Sender``, a value with control characters, surrounding spaces or a literal ``=?``):
  rare inputs, written exactly as before. ``tests/test_channel_mime_property.py`` checks
  that a parser reads the same headers and bodies from both writers.

Display names (From, To) come from contact data and are written so that the field always
parses back to exactly its address, whatever the name holds. A name is first made fit for a
header (:func:`header_name`: control characters, CR and LF included, and every run of white space
become one space, lone surrogates U+FFFD, and it is cut on a character boundary past
:data:`MAX_NAME_BYTES` of UTF-8, which keeps its encoded word under the 998-character line
limit); then it is written as plain words when it is nothing but atoms, as a quoted string
when it is printable ASCII, and otherwise as RFC 2047 encoded words for every word that is
not an atom. A name that itself looks like an encoded word (``=?utf-8?b?…?=``) is encoded in
turn, never written raw, since parsers decode ``=?…?=`` even inside quotes.
``tests/test_channel_mime_names.py`` checks arbitrary Unicode names through Python's strict
parser and through the SMTP channel. In the rare messages left to the ``email`` package the
address is as exact, but a name holding ``=?`` is left out and a very long non-ASCII name comes
back with spaces where the package folded it.

Where the direct writer deliberately differs from the ``email`` package:

* Long ASCII tokens (a ``List-Unsubscribe`` URL) stay as they are on a line of their own
  instead of turning into encoded words, which RFC 2369 parsers do not decode.
* A line break anywhere in a header value other than a display name is refused. The
  ``email`` package refused it except at the very end, where it ended the header block
  early and pushed the remaining headers into the body. In a display name it is a space.
* Body lines that start with ``From `` are written ``=46rom `` so that an mbox on the
  way cannot turn them into ``>From``; both bodies are always quoted-printable, so the
  message is 7-bit clean and needs no 8BITMIME from an SMTP server.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime

from engine.channels.base import PermanentFailure, check_address, header
from engine.message import EmailMessage, new_message_id

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
# Non-structural names the email package parses as structured fields (addresses, dates,
# dispositions): the direct writer leaves them to it, so they keep their exact old form.
_STRUCTURED_ELSEWHERE = frozenset(
    {
        "sender",
        "orig-date",
        "resent-date",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "content-disposition",
    }
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field-name: printable ASCII except ':'
_LINE_BREAK = "invalid header: Header values may not contain linefeed or carriage return characters"

MAX_LINE = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_HARD_LINE = 998  # ... and MUST be at most 998
_ENCODED_PREFIX = "=?utf-8?b?"
_ENCODED_BYTES = 45  # 60 base64 characters: a 72-character word, under RFC 2047's 75
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_PHRASE = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_PRINTABLE = re.compile(r"[ -~]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PLAIN_ADDRESS = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PLAIN_MESSAGE_ID = re.compile(rf"<[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[{_ATEXT}]+(?:\.[{_ATEXT}]+)*>")
_QP_LINE = 76  # RFC 2045 6.7: encoded lines at most 76 characters
MAX_NAME_BYTES = 540  # a display name's UTF-8: its encoded word stays under 740 characters
_NAME_SPACES = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")  # Unicode white space and control characters


def message_id_for(message: EmailMessage) -> str:
    """The ``Message-ID`` to write: the message's own when the caller set one, else a fresh unique one.

    The caller (the dispatcher) keeps one id per outbox row and passes it on every attempt,
    so a retry after an ambiguous failure (a timeout after the server took the message)
    carries the same id and mailbox providers can drop the duplicate. Without one, the id is
    random (:func:`engine.message.new_message_id`): never derived from a row number, which a
    second database would reuse.
    """
    chosen = message.message_id or header(message.headers, "Message-ID")
    if chosen and chosen.strip():
        _refuse_line_breaks(chosen.strip())
        return chosen.strip()
    return new_message_id(message.from_email)


# --- the direct writer ------------------------------------------------------------------------------


class _NotPlain(Exception):
    """An input the direct writer leaves to the ``email`` package (see the module docstring)."""


def message_bytes(message: EmailMessage, *, message_id: str, date: datetime) -> bytes:
    """The message as RFC 5322 bytes with CRLF line endings, ready for a file or SMTP ``DATA``.

    Raises :class:`PermanentFailure` for an invalid address, header name or header value
    (a line break in a value would inject headers) and for a message without any body.
    """
    try:
        return _write(message, message_id=message_id, date=date)
    except _NotPlain:
        return build_mime(message, message_id=message_id, date=date).as_bytes()


def _write(message: EmailMessage, *, message_id: str, date: datetime) -> bytes:
    to_email = check_address(message.to_email)
    from_email = check_address(message.from_email, "sender")
    reply_to = check_address(message.reply_to, "reply-to") if message.reply_to else None
    _refuse_injection(message, message_id)
    lines = [
        _address_field("From", header_name(message.from_name), from_email),
        _address_field("To", header_name(message.to_name), to_email),
    ]
    if reply_to:
        lines.append(_address_field("Reply-To", "", reply_to))
    lines.append(_unstructured("Subject", message.subject))
    lines.append("Date: " + format_datetime(date))
    if not _PLAIN_MESSAGE_ID.fullmatch(message_id):
        raise _NotPlain
    lines.append("Message-ID: " + message_id)
    later: list[tuple[str, str]] = []
    for name, value in message.headers.items():
        lowered = name.lower()
        if lowered in STRUCTURAL_HEADERS:
            continue
        if lowered in _STRUCTURED_ELSEWHERE:
            raise _NotPlain
        if lowered.startswith("content-"):
            later.append((name, value))
        else:
            lines.append(_unstructured(name, value))
    if message.locale and not any(name.lower() == "content-language" for name, _ in later):
        later.append(("Content-Language", message.locale))
    lines.append("MIME-Version: 1.0")
    parts = [(subtype, body) for subtype, body in (("plain", message.text), ("html", message.html)) if body]
    if not parts:
        raise PermanentFailure("the message has neither a text nor an HTML part")
    if len(parts) == 1:
        [(subtype, body)] = parts
        lines.append(f'Content-Type: text/{subtype}; charset="utf-8"')
        lines.append("Content-Transfer-Encoding: quoted-printable")
        lines.extend(_unstructured(name, value) for name, value in later)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + _quoted_printable(body)
    boundary = "=_tidings_" + hashlib.sha256(message_id.encode("ascii")).hexdigest()[:24]
    lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
    lines.extend(_unstructured(name, value) for name, value in later)
    chunks = [("\r\n".join(lines) + "\r\n").encode("ascii")]
    # "=_" never occurs in quoted-printable text ('=' is always followed by two hex digits or
    # a line break), so the boundary cannot appear inside either part.
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    for subtype, body in parts:
        chunks.append(delimiter)
        chunks.append(
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
        )
        chunks.append(_quoted_printable(body))
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks)


def _refuse_injection(message: EmailMessage, message_id: str) -> None:
    """Refuse what could add headers or end the header block, whichever writer then runs.

    Checked before anything is written, in the order the email package used to find
    them, so that the same message gets the same refusal as before.
    """
    _refuse_line_breaks(message.subject)
    _refuse_line_breaks(message_id)
    for name, value in message.headers.items():
        if name.lower() in STRUCTURAL_HEADERS:
            continue
        if not _HEADER_NAME.fullmatch(name):
            raise PermanentFailure(f"invalid header: invalid header name {name[:60]!r}")
        _refuse_line_breaks(value)
    if message.locale:
        _refuse_line_breaks(message.locale)


def _refuse_line_breaks(value: str) -> None:
    # The email package's rule (more than one line) plus any CR or LF at all: a trailing one
    # slipped through that rule and ended the header block early.
    if "\r" in value or "\n" in value or len(value.splitlines()) > 1:
        raise PermanentFailure(_LINE_BREAK)


def _unstructured(name: str, value: str) -> str:
    """``Name: value`` folded, for a free-text field (Subject, X-*, List-*, Content-Language)."""
    if value != value.strip() or "=?" in value:
        raise _NotPlain
    if _PRINTABLE.fullmatch(value):
        return _fold(name, value.split(" "))
    if _CONTROL.search(value):
        raise _NotPlain
    return _fold(name, _encoded_words(value, first=_room_after(name)))


def header_name(name: str | None) -> str:
    """``name`` as a display name is written: one line, single spaces, valid Unicode, bounded.

    Every run of white space (any kind: no-break, ideographic …) and control characters (CR
    and LF included) becomes one space, with none around the name — parsers fold white space
    in names anyway, each its own way; a lone surrogate becomes U+FFFD; past
    :data:`MAX_NAME_BYTES` bytes of UTF-8 the name is cut on a character boundary. Every other
    character is kept.
    """
    if not name:
        return ""
    text = _NAME_SPACES.sub(" ", name).strip(" ")
    data = text.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:  # lone surrogates: U+FFFD, as any decoder shows them
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        data = text.encode("utf-8")
    if len(data) > MAX_NAME_BYTES:
        text = data[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip(" ")
    return text


def _address_field(name: str, display_name: str, address: str) -> str:
    """``Name: display name <address>`` (or the bare address), folded; the name from :func:`header_name`."""
    if not _PLAIN_ADDRESS.fullmatch(address):
        raise _NotPlain  # a quoted or international local part
    if not display_name:
        return f"{name}: {address}"
    words: list[str] = []
    if "=?" not in display_name and _PHRASE.fullmatch(display_name):
        words = display_name.split(" ")
    elif "=?" not in display_name and _PRINTABLE.fullmatch(display_name):
        quoted = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= MAX_LINE - 2:
            words = [quoted]
    if not words:
        words = _phrase_words(display_name)
    words.append(f"<{address}>")
    return _fold(name, words)


def _phrase_words(display_name: str) -> list[str]:
    """A non-ASCII display name as plain atoms and one encoded word per run of other words.

    Decoders disagree on the space between two adjacent encoded words in a display name
    (RFC 2047 drops it, Python's parser keeps it), so adjacent words that need encoding
    share one encoded word, spaces included, however long that word gets; a space next to a
    plain atom is kept by everyone.
    """
    words: list[str] = []
    run: list[str] = []
    for word in display_name.split(" "):
        if _PHRASE.fullmatch(word) and "=?" not in word:
            if run:
                words.append(_encoded_word(" ".join(run)))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words.append(_encoded_word(" ".join(run)))
    return words


def _encoded_word(text: str) -> str:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise PermanentFailure("invalid header: the value is not valid Unicode text") from None
    return f"{_ENCODED_PREFIX}{binascii.b2a_base64(data, newline=False).decode('ascii')}?="


def _room_after(name: str) -> int:
    """Characters left on a header's first line after ``Name: ``."""
    return MAX_LINE - len(name) - 2


def _fold(name: str, words: list[str]) -> str:
    """``Name: w1 w2 …``, breaking lines before a word that would pass :data:`MAX_LINE`.

    Words are separated by one space and the line break goes in front of that space, so
    unfolding (removing the CRLF) gives the value back exactly. A word longer than a line
    gets a line of its own; past RFC 5322's hard limit the email package takes over.
    """
    line = name + ":"
    has_word = False
    done: list[str] = []
    for word in words:
        if len(word) > _HARD_LINE - 2:
            raise _NotPlain
        if has_word and word and len(line) + 1 + len(word) > MAX_LINE:
            done.append(line)
            line = " " + word
        else:
            line += " " + word
            has_word = has_word or bool(word)
    done.append(line)
    return "\r\n".join(done)


def _encoded_words(value: str, *, first: int) -> list[str]:
    """``value`` as RFC 2047 base64 words, each under 75 characters, cut between characters.

    Decoders join adjacent encoded words without the white space between them, so the
    words decode to ``value`` exactly; no word ends inside a UTF-8 sequence, so even a
    client that decodes each word on its own shows whole characters.
    """
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise PermanentFailure("invalid header: the value is not valid Unicode text") from None
    # The first word shares its line with "Name: ": fit it there when the name leaves room.
    limit = max(12, (first - len(_ENCODED_PREFIX) - 2) // 4 * 3)
    limit = min(limit, _ENCODED_BYTES)
    words: list[str] = []
    start, size = 0, len(data)
    while start < size:
        end = min(start + limit, size)
        while end < size and data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            end -= 1
        encoded = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"{_ENCODED_PREFIX}{encoded}?=")
        start, limit = end, _ENCODED_BYTES
    return words


def _quoted_printable(text: str) -> bytes:
    """``text`` as a UTF-8 quoted-printable body with CRLF line endings and a final line break.

    Line breaks are normalised the way the email package does (``\\r\\n``, ``\\r`` and ``\\n``
    each end a line). ``b2a_qp`` encodes ``=``, bytes over 126, trailing white space and a
    lone ``.`` line, and keeps encoded lines within 76 characters; lines that start with
    ``From `` get their ``F`` encoded as well.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise PermanentFailure("the message body is not valid Unicode text") from None
    if b"\r" in data:
        data = b"\r\n".join(data.splitlines()) + b"\r\n"
    else:  # the renderer's usual output: ten times cheaper than splitting into lines
        data = data.replace(b"\n", b"\r\n")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if encoded.startswith(b"From ") or b"\nFrom " in encoded:
        encoded = b"\r\n".join(_protect_from(line) for line in encoded.split(b"\r\n"))
    if b"=20\r\n" in encoded or b"=09\r\n" in encoded:
        # b2a_qp encodes a line's trailing space or tab without room for it: 77 characters.
        encoded = b"\r\n".join(_within_line(line) for line in encoded.split(b"\r\n"))
    return encoded


def _protect_from(line: bytes) -> bytes:
    """An encoded line starting ``From `` as ``=46rom …``, re-broken if that passes 76 characters."""
    if not line.startswith(b"From "):
        return line
    return _within_line(b"=46" + line[1:])


def _within_line(line: bytes) -> bytes:
    """An encoded line of more than 76 characters broken with a soft line break, never inside ``=XX``."""
    if len(line) <= _QP_LINE:
        return line
    cut = _QP_LINE - 1  # room for the soft break's "="
    if line[cut - 1 : cut] == b"=":
        cut -= 1
    elif line[cut - 2 : cut - 1] == b"=":
        cut -= 2
    return line[:cut] + b"=\r\n" + _within_line(line[cut:])


# --- the email package's writer ---------------------------------------------------------------------


def _package_name(name: str | None) -> str:
    """A display name for the ``email`` package, which writes an ``=?…?=`` in a name as it is (and
    parsers then decode it): such a name is left out there, so the address still parses exactly."""
    shown = header_name(name)
    return "" if "=?" in shown else shown


def build_mime(message: EmailMessage, *, message_id: str, date: datetime) -> MimeMessage:
    """The message built by the ``email`` package; :class:`PermanentFailure` for an invalid address or header.

    The fallback of :func:`message_bytes` for inputs outside the direct writer's plain
    shapes, and the reference the direct writer is tested against.
    """
    to_email = check_address(message.to_email)
    from_email = check_address(message.from_email, "sender")
    reply_to = check_address(message.reply_to, "reply-to") if message.reply_to else None
    mime = MimeMessage(policy=policy.SMTP)
    try:
        mime["From"] = Address(display_name=_package_name(message.from_name), addr_spec=from_email)
        mime["To"] = Address(display_name=_package_name(message.to_name), addr_spec=to_email)
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
    try:
        if message.text and message.html:
            mime.set_content(message.text, subtype="plain")
            mime.add_alternative(message.html, subtype="html")
        elif message.html:
            mime.set_content(message.html, subtype="html")
        elif message.text:
            mime.set_content(message.text, subtype="plain")
        else:
            raise PermanentFailure("the message has neither a text nor an HTML part")
    except UnicodeEncodeError:
        raise PermanentFailure("the message body is not valid Unicode text") from None
    if message.locale and not any(name.lower() == "content-language" for name, _ in later):
        later.append(("Content-Language", message.locale))
    try:
        for name, value in later:
            mime[name] = value
    except (ValueError, TypeError) as exc:
        raise PermanentFailure(f"invalid header: {' '.join(str(exc).split())[:200]}") from None
    return mime
