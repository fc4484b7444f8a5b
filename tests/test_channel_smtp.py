"""The SMTP channel through smtplib against a real aiosmtpd server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servers.smtp_server import SmtpServer

from engine.channels import PermanentFailure, TransientFailure, email_channel_for
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


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer(username=USER, password=PASSWORD) as running:
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
    assert received.login == USER
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


def test_wrong_password_is_permanent_and_never_shown(server: SmtpServer, clock: FakeClock) -> None:
    wrong = "not-the-password-42"
    channel = SmtpChannel(SmtpTarget.from_url(server.url(USER, wrong), timeout=2), now=clock.now)

    with pytest.raises(PermanentFailure) as caught:
        channel.send(message())

    assert "535" in caught.value.reason
    assert wrong not in str(caught.value)
    assert wrong not in repr(channel.target)


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


def _certificate_for_localhost(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file), made with ``cryptography``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * 30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.mark.parametrize("implicit", [False, True], ids=["smtp-starttls", "smtps"])
def test_tls_is_used_with_starttls_when_offered_or_from_the_start_with_smtps(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, implicit: bool
) -> None:
    import ssl

    cert_file, key_file = _certificate_for_localhost(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the client trusts our certificate, and only it

    with SmtpServer(
        username=USER, password=PASSWORD, tls_context=server_tls, implicit_tls=implicit
    ) as server:
        assert server.url().startswith("smtps://" if implicit else "smtp://")
        channel = SmtpChannel(SmtpTarget.from_url(server.url(USER, PASSWORD), timeout=2), now=clock.now)
        channel.send(message())
        channel.close()

    [received] = server.received
    assert received.tls and received.login == USER
