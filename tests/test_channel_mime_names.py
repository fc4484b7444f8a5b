"""Display names from any contact data: ``To:`` always parses back to exactly the contact's address.

Names are contact data (imports, shop events, older rows), so they hold anything: encoded words
(``=?utf-8?b?…?=``), ``<``, ``"``, ``,``, ``\\``, CR/LF, any Unicode. Whatever they hold, the
direct MIME writer's ``From:``/``To:`` must parse, under Python's strict parser
(``email.policy.default``, whose header registry builds the address objects), into the one
address it was given and the name as :func:`header_name` shows it — and so must a message that
went through the SMTP channel to a real server, envelope included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from servers.smtp_server import SmtpServer

from engine.channels import email_channel_for
from engine.channels.mime import MAX_NAME_BYTES, header_name, message_bytes
from engine.channels.smtp import SmtpChannel
from engine.message import EmailMessage
from engine.settings import Settings

PARSER = BytesParser(policy=policy.default)
DATE = datetime(2026, 12, 14, 10, 0, tzinfo=UTC)
ADDRESSES = ["ana@example.com", "mari.tamm+gifts@pood.example.ee", "o'brien@shop.example.co.uk"]
HOSTILE = [
    "=?utf-8?b?QUJD?=",
    "=?utf-8?q?Ana?= <boss@evil.example>",
    "Ana <ana@evil.example>",
    'Ana "the boss" Pop',
    "Pop, Ana",
    "Ana\\Pop",
    "Ana\r\nBcc: everyone@example.com",
    "Ana\nMaria",
    "Ștefan Ionescu 🎄",
    "(comment) Ana",
    "Ana;Maria:Pop@x",
    "   ",
    '"',
    "é" * 400,
    "👨‍👩‍👧 " * 100,
]

names = st.one_of(
    st.text(),
    st.lists(st.sampled_from([*'=?<>"(),;:@.\\[] \t\r\nabcXYZéș🎄', "=?utf-8?b?", "?="])).map("".join),
    st.sampled_from(HOSTILE),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),  # lone surrogates
)


def message(
    to_name: str | None,
    to_email: str = ADDRESSES[0],
    from_name: str | None = "Nordlys & Brad",
    subject: str = "Order by 19 December",
) -> EmailMessage:
    return EmailMessage(
        to_email=to_email,
        to_name=to_name,
        subject=subject,
        html="<p>Hello</p>",
        text="Hello",
        from_email="hello@shop.example.com",
        from_name=from_name,
        headers={"X-Tidings-Delivery": "7"},
    )


def parsed_address(raw: bytes, field: str) -> Address:
    parsed = PARSER.parsebytes(raw)
    header = parsed[field]
    assert header.defects == (), header.defects
    assert parsed["Bcc"] is None
    [address] = header.addresses
    return address


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, address=st.sampled_from(ADDRESSES))
@example(name="=?utf-8?b?QUJD?=", address=ADDRESSES[0])
@example(name="Ana <ana@evil.example>, victim@evil.example", address=ADDRESSES[0])
@example(name='a"b\\c', address=ADDRESSES[1])
@example(name="Ana\r\nBcc: everyone@example.com", address=ADDRESSES[2])
@example(name="é" * 400, address=ADDRESSES[0])
def test_any_display_name_round_trips_through_the_writer_and_a_strict_parser(name: str, address: str) -> None:
    raw = message_bytes(
        message(name, address, from_name=name), message_id="<tidings.7@shop.example.com>", date=DATE
    )

    for field in ("To", "From"):
        got = parsed_address(raw, field)
        assert got.addr_spec == (address if field == "To" else "hello@shop.example.com")
        assert got.display_name == header_name(name)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@settings(max_examples=200, deadline=None)
@given(names)
def test_header_name_is_one_bounded_line_and_leaves_ordinary_names_alone(name: str) -> None:
    shown = header_name(name)

    assert header_name(shown) == shown
    assert "  " not in shown and shown == shown.strip()
    assert not any(character.isspace() and character != " " for character in shown)
    assert len(shown.encode("utf-8")) <= MAX_NAME_BYTES
    ordinary = name == " ".join(name.split()) and name.isprintable()
    if ordinary and len(name.encode("utf-8", "replace")) <= MAX_NAME_BYTES:
        assert shown == name


@pytest.mark.parametrize("name", HOSTILE)
def test_the_email_package_fallback_still_parses_to_the_exact_address(name: str) -> None:
    # A literal "=?" in the subject is left to the email package, names and all.
    odd = message(name, subject="Deals =? inside")
    raw = message_bytes(odd, message_id="<tidings.7@shop.example.com>", date=DATE)

    assert b"=_tidings_" not in raw  # the email package wrote it, not the direct writer
    got = PARSER.parsebytes(raw)["To"].addresses
    assert [a.addr_spec for a in got] == [ADDRESSES[0]]
    if len(name) <= 60:  # longer ones the email package folds into words its own parser re-spaces
        assert got[0].display_name in (header_name(name), "")  # a name with "=?" is left out there


def test_an_international_domain_is_sent_in_ascii_form_in_header_and_envelope(
    smtp: tuple[SmtpServer, SmtpChannel],
) -> None:
    server, channel = smtp

    channel.send(message("Ana", "ana@bücher.de"))

    received = server.received[-1]
    assert received.rcpt_tos == ("ana@xn--bcher-kva.de",)
    assert received.message["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.de"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SmtpServer, SmtpChannel]]:
    with SmtpServer() as server:
        settings = Settings(
            workspace=Path("."),
            email_channel="smtp",
            smtp_url=server.url(),
            smtp_timeout_seconds=5,
            smtp_require_tls=False,  # a plain relay on 127.0.0.1, no credentials
        )
        channel = email_channel_for(settings)
        assert isinstance(channel, SmtpChannel)
        yield server, channel
        channel.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, address=st.sampled_from(ADDRESSES))
@example(name="=?utf-8?b?QUJD?= <x@evil.example>", address=ADDRESSES[0])
@example(name="Ana\r\n.\r\nRCPT TO:<victim@evil.example>", address=ADDRESSES[1])
def test_any_display_name_arrives_through_the_smtp_channel_to_exactly_its_address(
    smtp: tuple[SmtpServer, SmtpChannel], name: str, address: str
) -> None:
    server, channel = smtp
    before = len(server.received)

    channel.send(message(name, address))

    [received] = server.received[before:]
    assert received.rcpt_tos == (address,)
    got = received.message["To"]
    assert got.defects == ()
    assert [(a.display_name, a.addr_spec) for a in got.addresses] == [(header_name(name), address)]
