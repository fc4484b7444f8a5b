"""The direct MIME writer against the email package's, by generated messages.

For every generated message a standard parser (``BytesParser(policy=policy.default)``) must
read the same headers and the same bodies from ``message_bytes`` as from the email
package's own writer (``build_mime``), which the channels used before. Where the two
refuse a message, they refuse it alike; the one deliberate difference, a line break at
the very end of a header value, is checked on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.channels.base import PermanentFailure
from engine.channels.mime import build_mime, message_bytes
from engine.message import EmailMessage

DIACRITICS = "ăâîșțĂÂÎȘȚşţõäöüšžÕÄÖÜŠŽ"
EMOJI = ["🎄", "🎁", "❄️", "👨‍👩‍👧", "🇪🇪", "☃"]
ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PUNCTUATION = " !\"#$%&'()*+,-./:;<>?@[\\]^_`{|}~="
PARSER = BytesParser(policy=policy.default)
DATE = datetime(2026, 12, 14, 10, 0, tzinfo=timezone(timedelta(hours=2)))
# Headers whose form legitimately differs: the boundary is the writer's choice, and the
# transfer encoding of each part (the email package picks 7bit, 8bit, qp or base64 by size).
WRITER_CHOICES = {"content-type", "content-transfer-encoding", "mime-version"}

SINGLE = ASCII * 3 + PUNCTUATION + DIACRITICS * 2
# Runs of letters, punctuation and diacritics, with now and then an emoji of several code
# points (joiners, flags, variation selectors) in between.
chunks = st.one_of(st.text(SINGLE, min_size=1, max_size=12), st.sampled_from(EMOJI))


def texts(*, min_size: int = 0, max_size: int) -> st.SearchStrategy[str]:
    pieces = st.lists(chunks, min_size=min_size, max_size=max(1, max_size // 6))
    return pieces.map(lambda c: "".join(c)[:max_size])


words = texts(min_size=1, max_size=40).map(lambda w: w.replace(" ", ""))


def phrase(max_words: int) -> st.SearchStrategy[str]:
    """Words joined by single spaces, without a literal ``=?`` (the email package leaves it ambiguous)."""
    return (
        st.lists(words.filter(bool), min_size=1, max_size=max_words)
        .map(" ".join)
        .map(lambda text: text.replace("=?", "=-?"))
    )


line = st.one_of(
    texts(max_size=120),
    st.text(st.sampled_from(ASCII + " ="), min_size=60, max_size=300),
    st.builds(lambda rest: "From " + rest, texts(max_size=90)),
    st.builds(lambda rest: "." + rest, texts(max_size=90)),
    st.sampled_from([".", "..", "From", "=", "= ", "trailing \t", "\t", " ", "=3D", "a" * 75 + "=", ""]),
)
body = st.builds(
    lambda lines, newline, last: newline.join(lines) + last,
    st.lists(line, min_size=1, max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["", "\n", "\r\n"]),
)
url_token = st.text(st.sampled_from(ASCII + "-_"), min_size=10, max_size=160)


@st.composite
def plain_messages(draw: st.DrawFn) -> EmailMessage:
    """Messages shaped like the renderer's: what the direct writer takes on."""
    domain = draw(st.sampled_from(["shop.example.com", "pood.example.ee", "magazin.example.ro"]))
    token = draw(url_token)
    headers = {
        "X-Tidings-Campaign": draw(st.one_of(st.sampled_from(["holiday-greetings", "shipping"]), phrase(6))),
        "X-Tidings-Delivery": str(draw(st.integers(1, 10**9))),
        "List-Unsubscribe": f"<https://{domain}/u/{token}>, <mailto:unsubscribe@{domain}?subject=u-{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    text = draw(body)
    html = draw(body)
    if not text.strip() and not html.strip():
        html = "<p>x</p>"
    return EmailMessage(
        to_email=draw(
            st.sampled_from(["ana.popescu@example.ro", "mari.tamm@example.ee", "o'neil+x@m.example.com"])
        ),
        to_name=draw(st.one_of(st.none(), st.just(""), phrase(5))),
        subject=draw(phrase(20)),
        html=html,
        text=text,
        from_email=f"hello@{domain}",
        from_name=draw(st.one_of(st.none(), phrase(4))),
        reply_to=draw(st.one_of(st.none(), st.just(f"help@{domain}"))),
        headers=headers,
        locale=draw(st.sampled_from([None, "ro", "et", "en-US"])),
    )


def header_view(value: Any) -> Any:
    """A header as a parser reports it; address fields as (display name, address) pairs."""
    addresses = getattr(value, "addresses", None)
    if addresses is not None:
        return [(a.display_name, a.addr_spec) for a in addresses]
    return str(value)


def sent_value(message: EmailMessage, name: str) -> Any:
    """What the message says a header should read as (``None``: the writer's own, Date and Message-ID)."""
    fields: dict[str, Any] = {
        "from": [(message.from_name or "", message.from_email)],
        "to": [(message.to_name or "", message.to_email)],
        "reply-to": [("", message.reply_to)],
        "subject": message.subject,
        "content-language": message.locale,
    }
    fields.update((key.lower(), value) for key, value in message.headers.items())
    return fields.get(name.lower())


def body_view(parsed: MimeMessage) -> list[tuple[str, str | None, str]]:
    parts = list(parsed.iter_parts()) if parsed.is_multipart() else [parsed]
    if len(parts) > 1:
        assert parsed.get_content_type() == "multipart/alternative"
    return [
        (part.get_content_type(), part.get_content_charset(), part.get_content())  # type: ignore[attr-defined]
        for part in parts
    ]


def written(message: EmailMessage) -> tuple[bytes, bytes]:
    message_id = "<tidings.77@shop.example.com>"
    return (
        message_bytes(message, message_id=message_id, date=DATE),
        build_mime(message, message_id=message_id, date=DATE).as_bytes(),
    )


def assert_read_alike(ours: bytes, theirs: bytes, message: EmailMessage) -> None:
    """Same header names in the same order, same values, same bodies.

    A value may differ only where the email package's own message does not read back as
    sent (it moves a long ``List-Unsubscribe`` onto the next line, which a parser then
    reads with a leading space): ours must then read back exactly as sent.
    """
    mine, reference = PARSER.parsebytes(ours), PARSER.parsebytes(theirs)
    read = [(name, header_view(value)) for name, value in mine.items() if name.lower() not in WRITER_CHOICES]
    expected = [(n, header_view(v)) for n, v in reference.items() if n.lower() not in WRITER_CHOICES]
    assert [name for name, _ in read] == [name for name, _ in expected]
    for (name, value), (_, reference_value) in zip(read, expected, strict=True):
        if value != reference_value:
            assert value == sent_value(message, name) != reference_value, name
    assert body_view(mine) == body_view(reference)


def assert_no_defects(data: bytes) -> None:
    parsed = PARSER.parsebytes(data)
    assert not parsed.defects
    assert all(not getattr(value, "defects", ()) for value in parsed.values())


def assert_well_formed(data: bytes) -> None:
    """7-bit, CRLF only, header lines within 78 characters unless one word is longer, body lines within 76."""
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    head, _, rest = data.partition(b"\r\n\r\n")
    for text in head.split(b"\r\n"):
        value = text if text.startswith(b" ") else text.partition(b":")[2]
        assert len(text) <= 78 or b" " not in value.strip(), text  # one word longer than a line
    for text in rest.split(b"\r\n"):
        assert len(text) <= 76, text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_messages())
def test_a_parser_reads_the_same_headers_and_bodies_as_from_the_email_package(message: EmailMessage) -> None:
    ours, theirs = written(message)

    assert b"=_tidings_" in ours or not (message.text and message.html)  # the direct writer wrote it
    assert_well_formed(ours)
    assert_no_defects(ours)
    assert_read_alike(ours, theirs, message)


anything = st.one_of(
    st.text(max_size=60),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60),  # the direct writer's range
)


STRUCTURED_EXTRAS: list[dict[str, str]] = [
    {},
    {},
    {"Sender": "Bulk Sender <bulk@shop.example.com>"},
    {"Content-Disposition": "inline"},
]


@st.composite
def wild_messages(draw: st.DrawFn) -> EmailMessage:
    """Any Unicode (control characters, odd spaces, line-break characters) in every free-text field."""
    return EmailMessage(
        to_email=draw(st.sampled_from(["ana@example.ro"] * 4 + ["a..b@example.ro", "ana@exâmple.ro"])),
        to_name=draw(st.one_of(st.none(), anything)),
        subject=draw(anything),
        html=draw(st.text(max_size=200)),
        text=draw(st.text(max_size=200)),
        from_email="hello@shop.example.com",
        from_name=draw(st.one_of(st.none(), anything)),
        headers={
            "X-Tidings-Campaign": draw(anything),
            "X-Tidings-Delivery": "9",
            # Structured fields the direct writer leaves to the email package. Their values stay
            # well-formed: the email package's parser crashes on some it writes itself.
            **draw(st.sampled_from(STRUCTURED_EXTRAS)),
        },
        locale=draw(st.sampled_from([None, "ro", "et"])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wild_messages())
def test_any_message_is_read_alike_or_refused_alike(message: EmailMessage) -> None:
    message_id = "<tidings.9@shop.example.com>"
    try:
        theirs: bytes | None = build_mime(message, message_id=message_id, date=DATE).as_bytes()
    except PermanentFailure:
        theirs = None
    try:
        ours: bytes | None = message_bytes(message, message_id=message_id, date=DATE)
    except PermanentFailure:
        ours = None

    if ours is None:
        fields = [message.subject, message.to_name or "", message.from_name or "", *message.headers.values()]
        assert theirs is None or any("\r" in f or "\n" in f for f in fields)
    else:
        assert theirs is not None
        assert_read_alike(ours, theirs, message)


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Reduceri\r\nBcc: everyone@example.com"},
        {"subject": "Reduceri\nBcc: everyone@example.com"},
        {"subject": "Reduceri\rBcc: everyone@example.com"},
        {"subject": "Reduceri\u2028Bcc: everyone@example.com"},
        {"headers": {"X-Tidings-Campaign": "x\r\nBcc: everyone@example.com"}},
        {"locale": "ro\r\nBcc: everyone@example.com"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_line_break_inside_a_header_is_refused_as_before(change: dict[str, Any]) -> None:
    message = _message(**change)

    with pytest.raises(PermanentFailure, match="invalid header") as ours:
        message_bytes(message, message_id="<tidings.1@shop.example.com>", date=DATE)
    with pytest.raises(PermanentFailure, match="invalid header") as theirs:
        build_mime(message, message_id="<tidings.1@shop.example.com>", date=DATE)

    assert ours.value.reason == theirs.value.reason


@pytest.mark.parametrize("field", ["to_name", "from_name"])
def test_a_line_break_in_a_display_name_is_a_space_in_both_writers_and_injects_nothing(field: str) -> None:
    message = _message(**{field: "Ana\r\nBcc: everyone@example.com"})

    for raw in (
        message_bytes(message, message_id="<tidings.1@shop.example.com>", date=DATE),
        build_mime(message, message_id="<tidings.1@shop.example.com>", date=DATE).as_bytes(),
    ):
        parsed = PARSER.parsebytes(raw)
        header = "To" if field == "to_name" else "From"
        assert parsed["Bcc"] is None
        assert parsed[header].addresses[0].display_name == "Ana Bcc: everyone@example.com"


@pytest.mark.parametrize("field", ["subject", "X-Tidings-Campaign"])
def test_a_trailing_line_break_in_a_header_is_refused_instead_of_ending_the_header_block(field: str) -> None:
    value = "Reduceri\r\n"
    message = (
        _message(subject=value) if field == "subject" else _message(headers={"X-Tidings-Campaign": value})
    )

    with pytest.raises(PermanentFailure, match="linefeed or carriage return"):
        message_bytes(message, message_id="<tidings.1@shop.example.com>", date=DATE)
    # What the email package made of it: the header block ended early.
    broken = PARSER.parsebytes(build_mime(message, message_id="<tidings.1@x.example>", date=DATE).as_bytes())
    assert broken["Message-ID"] is None or broken["X-Tidings-Delivery"] is None


def _message(**changes: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "to_email": "ana.popescu@example.ro",
        "to_name": "Ana Popescu",
        "subject": "Sărbători fericite",
        "html": "<p>Bună!</p>",
        "text": "Bună!",
        "from_email": "hello@shop.example.com",
        "from_name": "Nordlys & Brad",
        "headers": {"X-Tidings-Campaign": "holiday-greetings", "X-Tidings-Delivery": "5"},
        "locale": "ro",
    }
    fields.update(changes)
    return EmailMessage(**fields)


def test_dates_keep_their_offset_and_utc_reads_back_as_the_same_instant() -> None:
    message = _message()
    for moment in (DATE, datetime(2027, 1, 4, 8, 30, tzinfo=UTC)):
        parsed = PARSER.parsebytes(message_bytes(message, message_id="<tidings.1@x.example>", date=moment))
        assert parsed["Date"].datetime == moment
