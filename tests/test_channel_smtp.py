"""The SMTP channel through smtplib against a real aiosmtpd server."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servers.smtp_server import SmtpServer
from servers.tls import localhost_certificate, server_context

from engine.channels import ChannelSuspended, PermanentFailure, TransientFailure, email_channel_for
from engine.channels.smtp import SmtpChannel, SmtpTarget
from engine.clock import FakeClock
from engine.message import EmailMessage
from engine.settings import Settings

USER = "shop@example.com"
PASSWORD = "p@ss:w0rd/with-specials"


def message(to_email: str = "mari.tamm@example.ee", delivery: str = "77") -> EmailMessage:
    return EmailMessage(
        to_email=to_email,
        to_name="Mari Tamm",
        subject="Tellige 19. detsembriks",
        html="<p>Tere, Mari!</p>",
        text="Tere, Mari!",
        from_email="hello@shop.example.com",
        from_name="Nordlys & Brad",
        headers={
            "X-Tidings-Campaign": "shipping-deadlines",
            "X-Tidings-Delivery": delivery,
            "List-Unsubscribe": "<https://shop.example.com/u/tok>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return localhost_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's TLS context; the client trusts its certificate, and only it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    return server_context(*certificate)


@pytest.fixture
def server(trusted: ssl.SSLContext) -> Iterator[SmtpServer]:
    with SmtpServer(username=USER, password=PASSWORD, tls_context=trusted) as running:
        yield running


@pytest.fixture
def channel(server: SmtpServer, clock: FakeClock) -> Iterator[SmtpChannel]:
    settings = Settings(
        workspace=Path("."), email_channel="smtp", smtp_url=server.url(USER, PASSWORD), smtp_timeout_seconds=2
    )
    built = email_channel_for(settings, now=clock.now)
    assert isinstance(built, SmtpChannel)
    yield built
    built.close()


def test_message_arrives_authenticated_with_both_parts_and_every_header(
    server: SmtpServer, channel: SmtpChannel
) -> None:
    result = channel.send(message())

    [received] = server.received
    assert received.login == USER and received.tls
    assert [attempt.tls for attempt in server.auth_attempts] == [True]
    assert received.mail_from == "hello@shop.example.com"
    assert received.rcpt_tos == ("mari.tamm@example.ee",)
    parsed = received.message
    assert parsed["Message-ID"] == result.provider_message_id
    assert parsed["Subject"] == "Tellige 19. detsembriks"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Tidings-Delivery"] == "77"
    assert parsed.get_body(("plain",)).get_content().strip() == "Tere, Mari!"  # type: ignore[union-attr]
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Tere, Mari!</p>"  # type: ignore[union-attr]


def test_one_connection_per_thread_is_reused_across_messages(
    server: SmtpServer, channel: SmtpChannel
) -> None:
    before = server.connections
    for n in range(5):
        channel.send(message(delivery=str(n)))

    assert len(server.received) == 5
    assert server.connections - before == 1


def test_a_connection_the_server_dropped_is_reopened_and_the_message_sent(
    server: SmtpServer, channel: SmtpChannel
) -> None:
    channel.send(message(delivery="1"))
    before = server.connections
    server.drop_connections()

    channel.send(message(delivery="2"))

    assert [r.message["X-Tidings-Delivery"] for r in server.received] == ["1", "2"]
    assert server.connections == before + 1


def test_recipient_refused_with_5xx_is_permanent(server: SmtpServer, channel: SmtpChannel) -> None:
    server.refuse("gone@example.ee", "550 5.1.1 No such user")

    with pytest.raises(PermanentFailure) as caught:
        channel.send(message(to_email="gone@example.ee"))

    assert "550" in caught.value.reason and "No such user" in caught.value.reason


def test_recipient_refused_with_4xx_is_transient(server: SmtpServer, channel: SmtpChannel) -> None:
    server.refuse("busy@example.ee", "450 4.2.1 Mailbox busy, try later")

    with pytest.raises(TransientFailure, match="450"):
        channel.send(message(to_email="busy@example.ee"))


def test_message_refused_after_data_is_classified_by_its_code(
    server: SmtpServer, channel: SmtpChannel
) -> None:
    server.refuse_next_data("451 4.3.0 Try again later")
    server.refuse_next_data("554 5.7.1 Message rejected as spam")

    with pytest.raises(TransientFailure, match="451"):
        channel.send(message(delivery="1"))
    with pytest.raises(PermanentFailure, match="554"):
        channel.send(message(delivery="2"))
    channel.send(message(delivery="3"))  # the connection is still good

    assert [r.message["X-Tidings-Delivery"] for r in server.received] == ["3"]


def test_wrong_password_suspends_the_channel_and_is_never_shown(server: SmtpServer, clock: FakeClock) -> None:
    wrong = "not-the-password-42"
    channel = SmtpChannel(SmtpTarget.from_url(server.url(USER, wrong), timeout=2), now=clock.now)

    with pytest.raises(ChannelSuspended) as caught:
        channel.send(message())

    assert "535" in caught.value.reason and "authentication failed" in caught.value.reason
    assert wrong not in str(caught.value)
    assert wrong not in repr(channel.target)


def test_no_password_crosses_to_a_server_that_offers_auth_without_starttls(clock: FakeClock) -> None:
    with SmtpServer(username=USER, password=PASSWORD) as careless:
        for require_tls in (True, False):
            target = SmtpTarget.from_url(careless.url(USER, PASSWORD), timeout=2, require_tls=require_tls)
            channel = SmtpChannel(target, now=clock.now)

            with pytest.raises(ChannelSuspended, match="does not offer STARTTLS") as caught:
                channel.send(message())

            assert PASSWORD not in str(caught.value)
        assert careless.auth_attempts == []
        assert careless.received == []


def test_with_tls_required_nothing_is_sent_to_a_server_without_starttls(clock: FakeClock) -> None:
    with SmtpServer() as plain:
        channel = SmtpChannel(SmtpTarget.from_url(plain.url(), timeout=2), now=clock.now)

        with pytest.raises(ChannelSuspended, match="TIDINGS_SMTP_REQUIRE_TLS is true"):
            channel.send(message())

        assert plain.received == []


def test_a_relay_without_credentials_may_be_plain_when_tls_is_not_required(clock: FakeClock) -> None:
    with SmtpServer() as relay:
        settings = Settings(
            workspace=Path("."), email_channel="smtp", smtp_url=relay.url(), smtp_require_tls=False
        )
        channel = email_channel_for(settings, now=clock.now)
        channel.send(message())
        channel.close()

        [received] = relay.received
        assert not received.tls and received.login is None


def test_an_unreachable_server_is_transient(clock: FakeClock) -> None:
    with SmtpServer() as gone:
        url = gone.url()
    channel = SmtpChannel(SmtpTarget.from_url(url, timeout=2), now=clock.now)

    with pytest.raises(TransientFailure, match="unreachable"):
        channel.send(message())


def test_concurrent_senders_each_get_their_message_through(server: SmtpServer, channel: SmtpChannel) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: channel.send(message(delivery=str(n))), range(20)))

    delivered = sorted(int(r.message["X-Tidings-Delivery"]) for r in server.received)
    assert delivered == list(range(20))


def test_header_injection_in_a_recipient_is_refused_before_connecting(
    server: SmtpServer, channel: SmtpChannel
) -> None:
    before = server.connections

    with pytest.raises(PermanentFailure, match="invalid recipient"):
        channel.send(message(to_email="mari@example.ee\r\nBcc: everyone@example.ee"))

    assert server.connections == before


@pytest.mark.parametrize("implicit", [False, True], ids=["smtp-starttls", "smtps"])
def test_tls_is_used_with_starttls_when_offered_or_from_the_start_with_smtps(
    trusted: ssl.SSLContext, clock: FakeClock, implicit: bool
) -> None:
    with SmtpServer(username=USER, password=PASSWORD, tls_context=trusted, implicit_tls=implicit) as server:
        assert server.url().startswith("smtps://" if implicit else "smtp://")
        channel = SmtpChannel(SmtpTarget.from_url(server.url(USER, PASSWORD), timeout=2), now=clock.now)
        channel.send(message())
        channel.close()

    [received] = server.received
    assert received.tls and received.login == USER
    assert [attempt.tls for attempt in server.auth_attempts] == [True]


def test_the_message_id_set_by_the_caller_is_the_one_sent(server: SmtpServer, channel: SmtpChannel) -> None:
    sent = message()
    for _ in range(2):  # a retry of the same outbox row carries the same id
        result = channel.send(
            EmailMessage(**{**_fields(sent), "message_id": "<tidings.r77@shop.example.com>"})
        )
        assert result.provider_message_id == "<tidings.r77@shop.example.com>"

    assert [r.message["Message-ID"] for r in server.received] == ["<tidings.r77@shop.example.com>"] * 2


def _fields(sent: EmailMessage) -> dict[str, object]:
    return {name: getattr(sent, name) for name in EmailMessage.__dataclass_fields__}
