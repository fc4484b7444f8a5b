"""The direct MIME writer: what a mail client and a mailbox provider see in its output."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from typing import Any

from engine.channels.mime import message_bytes
from engine.message import EmailMessage

DATE = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
MESSAGE_ID = "<tidings.42@shop.example.com>"
UNSUBSCRIBE = (
    "<https://shop.example.com/u/eyJjIjo0MiwiayI6ImhvbGlkYXktZ3JlZXRpbmdzIn0.Z3JlZXRpbmdzLXNpZ25hdHVyZS1sb25n"
    "LXRva2VuLWZvci10ZXN0cw>, <mailto:unsubscribe@shop.example.com?subject=unsubscribe-eyJjIjo0Mn0>"
)


def message(**changes: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "to_email": "ana.popescu@example.ro",
        "to_name": "Ana Popescu",
        "subject": "Sărbători fericite, Ana! 🎄",
        "html": '<p style="color:#333">Comandă până pe 18 decembrie</p>\n',
        "text": "Comandă până pe 18 decembrie\n",
        "from_email": "hello@shop.example.com",
        "from_name": "Nordlys & Brad",
        "headers": {
            "X-Tidings-Campaign": "holiday-greetings",
            "X-Tidings-Delivery": "42",
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "locale": "ro",
    }
    fields.update(changes)
    return EmailMessage(**fields)


def write(msg: EmailMessage) -> bytes:
    return message_bytes(msg, message_id=MESSAGE_ID, date=DATE)


def parse(data: bytes) -> MimeMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, MimeMessage)
    return parsed


def content(part: Any) -> str:
    """A text part as a mail client shows it (the parser keeps the wire's CRLF line ends)."""
    text: str = part.get_content()
    return text.replace("\r\n", "\n")


def head(data: bytes) -> str:
    return data.partition(b"\r\n\r\n")[0].decode("ascii")


def test_list_unsubscribe_keeps_its_urls_readable_for_one_click_unsubscribe() -> None:
    data = write(message())

    raw = head(data)
    assert "List-Unsubscribe: <https://shop.example.com/u/" in raw
    assert "mailto:unsubscribe@shop.example.com" in raw  # never hidden in an encoded word
    assert parse(data)["List-Unsubscribe"] == UNSUBSCRIBE
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw


def test_romanian_and_estonian_names_and_subjects_read_back_exactly() -> None:
    subject = "Tellige 19. detsembriks — jõulud on õues, Ștefan! " * 3
    data = write(message(subject=subject.strip(), to_name="Ștefan Țăranu-Õunapuu", from_name="Pood Õnn"))

    parsed = parse(data)
    assert parsed["Subject"] == subject.strip()
    assert parsed["To"].addresses[0].display_name == "Ștefan Țăranu-Õunapuu"
    assert parsed["From"].addresses[0].display_name == "Pood Õnn"
    assert data.isascii()


def test_header_lines_stay_within_78_characters() -> None:
    long_subject = " ".join(["Reduceri de Crăciun pentru toată familia"] * 6)

    for text in head(write(message(subject=long_subject, to_name="Maria-Magdalena " * 5))).split("\r\n"):
        assert len(text) <= 78 or text.startswith("List-Unsubscribe:"), text


def test_a_display_name_with_punctuation_is_quoted() -> None:
    data = write(message(to_name='Popescu, Ana "Ani"'))

    assert 'To: "Popescu, Ana \\"Ani\\"" <ana.popescu@example.ro>' in head(data)
    assert parse(data)["To"].addresses[0].display_name == 'Popescu, Ana "Ani"'


def test_both_parts_are_quoted_printable_utf8_text_then_html() -> None:
    parsed = parse(write(message()))

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert {p["Content-Transfer-Encoding"] for p in parts} == {"quoted-printable"}
    assert {p.get_content_charset() for p in parts} == {"utf-8"}
    assert content(parts[1]) == '<p style="color:#333">Comandă până pe 18 decembrie</p>\n'


def test_body_lines_starting_with_from_or_a_dot_survive_mbox_and_smtp() -> None:
    text = "From the whole team:\n.\n.hidden\nFrom " + "x" * 80 + "\n"
    data = write(message(text=text))

    body = data.partition(b"\r\n\r\n")[2]
    assert b"\r\nFrom " not in body
    assert b"\r\n.\r\n" not in body
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert content(parse(data).get_body(("plain",))) == text


def test_a_trailing_space_at_the_line_limit_keeps_encoded_lines_within_76_characters() -> None:
    # binascii.b2a_qp writes a line's trailing space as "=20" past the limit (77 characters).
    text = "0" * 137 + "==== \n" + "x" * 73 + "\t\n"
    data = write(message(text=text))

    body = data.partition(b"\r\n\r\n")[2]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert content(parse(data).get_body(("plain",))) == text


def test_a_message_with_only_html_is_a_single_html_part() -> None:
    parsed = parse(write(message(text="")))

    assert parsed.get_content_type() == "text/html"
    assert content(parsed) == '<p style="color:#333">Comandă până pe 18 decembrie</p>\n'
    assert parsed["Content-Language"] == "ro"


def test_the_same_delivery_at_the_same_moment_is_written_byte_for_byte_the_same() -> None:
    assert write(message()) == write(message())


def test_a_structured_header_the_direct_writer_leaves_alone_is_still_written() -> None:
    parsed = parse(
        write(message(headers={"Sender": "Bulk Sender <bulk@shop.example.com>", "X-Tidings-Delivery": "42"}))
    )

    assert parsed["Sender"].address.addr_spec == "bulk@shop.example.com"
    assert parsed["Subject"] == "Sărbători fericite, Ana! 🎄"
