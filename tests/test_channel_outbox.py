"""The file outbox (the embedded default) and the channel factory."""

from __future__ import annotations

import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from engine.channels import PermanentFailure, email_channel_for, social_channel_for
from engine.channels.outbox import OutboxEmailChannel, OutboxSocialChannel
from engine.clock import FakeClock
from engine.message import EmailMessage, SocialPost
from engine.settings import Settings

UNSUBSCRIBE = "<https://shop.example.com/u/abc>, <mailto:unsubscribe@shop.example.com?subject=u-abc>"


def message(delivery: str | None = "501", **changes: object) -> EmailMessage:
    headers = {
        "X-Tidings-Campaign": "holiday-greetings",
        "List-Unsubscribe": UNSUBSCRIBE,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if delivery is not None:
        headers["X-Tidings-Delivery"] = delivery
    fields: dict[str, object] = {
        "to_email": "ana.popescu@example.ro",
        "to_name": "Ana Popescu",
        "subject": "Sărbători fericite, Ana!",
        "html": "<p>Sărbători fericite!</p>",
        "text": "Sărbători fericite!",
        "from_email": "hello@shop.example.com",
        "from_name": "Nordlys & Brad",
        "headers": headers,
        "locale": "ro",
    }
    fields.update(changes)
    return EmailMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(workspace=tmp_path)


@pytest.fixture
def emails(settings: Settings, clock: FakeClock) -> OutboxEmailChannel:
    channel = email_channel_for(settings, now=clock.now)
    assert isinstance(channel, OutboxEmailChannel)
    return channel


def parse(path: Path) -> MimeMessage:
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, MimeMessage)
    return parsed


def test_email_is_a_parseable_eml_with_text_html_and_every_header(
    emails: OutboxEmailChannel, settings: Settings, clock: FakeClock
) -> None:
    result = emails.send(message())

    path = settings.outbox_path / "email" / "501.eml"
    parsed = parse(path)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Sărbători fericite!</p>"  # type: ignore[union-attr]
    assert parsed["Subject"] == "Sărbători fericite, Ana!"
    assert parsed["From"] == "Nordlys & Brad <hello@shop.example.com>"
    assert parsed["To"] == "Ana Popescu <ana.popescu@example.ro>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"].startswith("<https://shop.example.com/u/abc>")
    assert parsed["X-Tidings-Campaign"] == "holiday-greetings"
    assert parsed["Content-Language"] == "ro"
    assert parsedate_to_datetime(parsed["Date"]) == clock.now()
    assert parsed["Message-ID"] == result.provider_message_id
    assert re.fullmatch(r"<tidings\.[0-9a-f]{32}@shop\.example\.com>", parsed["Message-ID"])


def test_a_message_id_set_by_the_caller_is_the_one_written(
    emails: OutboxEmailChannel, settings: Settings
) -> None:
    result = emails.send(message(message_id="<row-501.a1b2@shop.example.com>"))

    parsed = parse(settings.outbox_path / "email" / "501.eml")
    assert parsed["Message-ID"] == result.provider_message_id == "<row-501.a1b2@shop.example.com>"


def test_two_databases_numbering_deliveries_alike_never_share_a_message_id(
    tmp_path: Path, clock: FakeClock
) -> None:
    staging = OutboxEmailChannel(tmp_path / "staging", now=clock.now)
    production = OutboxEmailChannel(tmp_path / "production", now=clock.now)

    ids = {staging.send(message()).provider_message_id, production.send(message()).provider_message_id}

    assert len(ids) == 2


def test_sending_the_same_delivery_twice_leaves_one_file(
    emails: OutboxEmailChannel, settings: Settings, clock: FakeClock
) -> None:
    emails.send(message(subject="First try"))
    clock.advance(60)
    emails.send(message(subject="Second try"))

    files = sorted((settings.outbox_path / "email").iterdir())
    assert [f.name for f in files] == ["501.eml"]
    assert parse(files[0])["Subject"] == "Second try"


def test_messages_without_a_delivery_id_each_get_their_own_file(
    emails: OutboxEmailChannel, settings: Settings
) -> None:
    emails.send(message(delivery=None))
    emails.send(message(delivery=None))

    assert len(list((settings.outbox_path / "email").glob("*.eml"))) == 2


def test_a_delivery_id_with_path_characters_cannot_escape_the_outbox(
    emails: OutboxEmailChannel, settings: Settings
) -> None:
    emails.send(message(delivery="../../etc/passwd"))

    [written] = [p for p in settings.outbox_path.rglob("*") if p.is_file()]
    assert written.parent == settings.outbox_path / "email"


def test_a_header_with_a_line_break_is_refused_and_nothing_is_written(
    emails: OutboxEmailChannel, settings: Settings
) -> None:
    bad = message()
    bad.headers["X-Tidings-Campaign"] = "holiday\r\nBcc: everyone@example.com"

    with pytest.raises(PermanentFailure, match="invalid header"):
        emails.send(bad)

    assert not (settings.outbox_path / "email").exists()


def test_post_is_a_json_file_with_text_channel_campaign_and_time(
    settings: Settings, clock: FakeClock
) -> None:
    posts = social_channel_for(settings, now=clock.now)
    assert isinstance(posts, OutboxSocialChannel)
    post = SocialPost(
        text="3 days left 🎄", campaign="shipping-countdown", headers={"X-Tidings-Delivery": "post-9"}
    )

    result = posts.post(post)
    posts.post(post)

    [path] = list((settings.outbox_path / "social").iterdir())
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["text"] == "3 days left 🎄"
    assert document["channel"] == "x"
    assert document["campaign"] == "shipping-countdown"
    assert document["posted_at"] == clock.now().isoformat()
    assert result.provider_message_id == "outbox:post-9"


def test_factory_builds_the_configured_provider_channels(tmp_path: Path) -> None:
    from engine.channels.sendgrid import SendGridChannel
    from engine.channels.smtp import SmtpChannel
    from engine.channels.x import XChannel

    sendgrid = Settings(workspace=tmp_path, email_channel="sendgrid", sendgrid_api_key="SG.k")
    smtp = Settings(workspace=tmp_path, email_channel="smtp", smtp_url="smtps://u:p@mail.example.com")
    x = Settings(
        workspace=tmp_path,
        social_channel="x",
        x_consumer_key="a",
        x_consumer_secret="b",
        x_access_token="c",
        x_access_token_secret="d",
    )

    assert isinstance(email_channel_for(sendgrid), SendGridChannel)
    built = email_channel_for(smtp)
    assert isinstance(built, SmtpChannel)
    assert (built.target.port, built.target.use_ssl) == (465, True)
    assert isinstance(social_channel_for(x), XChannel)
