"""The SendGrid channel through the real ``sendgrid`` library against a SendGrid-compatible server."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers.sendgrid_server import (
    SendGridServer,
    bad_request,
    forbidden,
    rate_limited,
    server_error,
    slow,
)

from engine.channels import (
    ChannelSuspended,
    PermanentFailure,
    RateLimited,
    TransientFailure,
    email_channel_for,
)
from engine.channels.sendgrid import SendGridChannel, mail_body
from engine.clock import FakeClock
from engine.message import EmailMessage
from engine.settings import Settings

API_KEY = "SG.test-secret-key-0123456789"
UNSUBSCRIBE = "<https://shop.example.com/u/tok>, <mailto:unsubscribe@shop.example.com?subject=u-tok>"


def message(**changes: object) -> EmailMessage:
    fields: dict[str, object] = {
        "to_email": "ana.popescu@example.ro",
        "to_name": "Ana Popescu",
        "subject": "Comandați până pe 18 decembrie",
        "html": "<p>Bună, Ana!</p><a href='https://shop.example.com/u/tok'>Dezabonare</a>",
        "text": "Bună, Ana!\nDezabonare: https://shop.example.com/u/tok",
        "from_email": "hello@shop.example.com",
        "from_name": "Nordlys & Brad",
        "reply_to": "care@shop.example.com",
        "headers": {
            "X-Tidings-Campaign": "shipping-deadlines",
            "X-Tidings-Delivery": "1042",
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "categories": ("holiday",),
    }
    fields.update(changes)
    return EmailMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def channel(server: SendGridServer, clock: FakeClock) -> Iterator[SendGridChannel]:
    settings = Settings(
        workspace=Path("."),
        email_channel="sendgrid",
        sendgrid_api_key=API_KEY,
        sendgrid_host=server.url,
        sendgrid_timeout_seconds=0.5,
    )
    built = email_channel_for(settings, now=clock.now)
    assert isinstance(built, SendGridChannel)
    yield built
    built.close()


def test_message_arrives_with_recipient_content_and_one_click_unsubscribe_headers(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    result = channel.send(message())

    [mail] = server.accepted
    assert result.provider_message_id == mail.message_id
    body = mail.body
    [personalization] = body["personalizations"]
    assert personalization["to"] == [{"email": "ana.popescu@example.ro", "name": "Ana Popescu"}]
    message_id = personalization["headers"].pop("Message-ID")
    assert personalization["headers"] == {
        "List-Unsubscribe": UNSUBSCRIBE,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert re.fullmatch(r"<tidings\.[0-9a-f]{32}@shop\.example\.com>", message_id)
    assert body["from"] == {"email": "hello@shop.example.com", "name": "Nordlys & Brad"}
    assert body["reply_to"] == {"email": "care@shop.example.com"}
    assert body["subject"] == "Comandați până pe 18 decembrie"
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][1]["value"].startswith("<p>Bună, Ana!</p>")
    assert body["headers"]["X-Tidings-Delivery"] == "1042"
    assert mail.headers["Authorization"] == f"Bearer {API_KEY}"


def test_a_message_id_set_by_the_caller_reaches_sendgrid_unchanged(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    channel.send(message(message_id="<tidings.row-1042.9f@shop.example.com>"))

    [mail] = server.accepted
    [personalization] = mail.body["personalizations"]
    assert personalization["headers"]["Message-ID"] == "<tidings.row-1042.9f@shop.example.com>"


def test_delivery_and_campaign_travel_in_custom_args_for_the_webhook(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    channel.send(message(custom_args={"variant": "b"}))

    [personalization] = server.accepted[0].body["personalizations"]
    assert personalization["custom_args"] == {
        "variant": "b",
        "delivery_id": "1042",
        "campaign_id": "shipping-deadlines",
    }


def test_campaign_is_the_first_category_and_at_most_ten_are_sent(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    channel.send(message(categories=tuple(f"tag-{n}" for n in range(12))))

    categories = server.accepted[0].body["categories"]
    assert categories[0] == "shipping-deadlines"
    assert len(categories) == 10


def test_accepted_at_comes_from_the_injected_clock(channel: SendGridChannel, clock: FakeClock) -> None:
    assert channel.send(message()).accepted_at == clock.now()


def test_429_with_retry_after_is_rate_limited_with_that_delay(
    server: SendGridServer, channel: SendGridChannel, clock: FakeClock
) -> None:
    server.faults.script(rate_limited(retry_after=37))

    with pytest.raises(RateLimited) as caught:
        channel.send(message())

    assert caught.value.retry_after == 37
    assert caught.value.reset_at == clock.now() + timedelta(seconds=37)
    assert "429" in caught.value.reason and "too many requests" in caught.value.reason


def test_429_with_only_a_reset_epoch_waits_until_that_reset(
    server: SendGridServer, channel: SendGridChannel, clock: FakeClock
) -> None:
    reset = int(clock.now().timestamp()) + 120
    server.faults.script(rate_limited(retry_after=None, reset_epoch=reset))

    with pytest.raises(RateLimited) as caught:
        channel.send(message())

    assert caught.value.reset_at == datetime.fromtimestamp(reset, UTC)
    assert caught.value.retry_after == 120


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(server: SendGridServer, channel: SendGridChannel, status: int) -> None:
    server.faults.script(server_error(status))

    with pytest.raises(TransientFailure) as caught:
        channel.send(message())

    assert not isinstance(caught.value, RateLimited)
    assert str(status) in caught.value.reason


def test_a_server_slower_than_the_timeout_is_transient(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    server.faults.script(slow(30))

    with pytest.raises(TransientFailure) as caught:
        channel.send(message())

    assert "timed out" in caught.value.reason


def test_an_unreachable_host_is_transient(clock: FakeClock) -> None:
    with SendGridServer() as gone:
        host = gone.url
    channel = SendGridChannel(API_KEY, host=host, timeout=0.5, now=clock.now)

    with pytest.raises(TransientFailure) as caught:
        channel.send(message())

    assert "unreachable" in caught.value.reason


def test_400_is_permanent_with_sendgrid_s_message(server: SendGridServer, channel: SendGridChannel) -> None:
    server.faults.script(bad_request("The from address does not match a verified Sender Identity.", "from"))

    with pytest.raises(PermanentFailure) as caught:
        channel.send(message())

    assert caught.value.reason == (
        "SendGrid 400: from: The from address does not match a verified Sender Identity."
    )


def test_a_body_the_real_api_would_refuse_is_refused_by_the_schema(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    with pytest.raises(PermanentFailure) as caught:
        channel.send(message(subject=""))

    assert caught.value.reason.startswith("SendGrid 400: subject:")
    assert server.accepted == []


def test_a_wrong_key_suspends_the_channel_and_the_key_never_appears_in_the_error(
    server: SendGridServer, clock: FakeClock
) -> None:
    wrong = "SG.wrong-secret-key-9876543210"
    channel = SendGridChannel(wrong, host=server.url, timeout=0.5, now=clock.now)

    with pytest.raises(ChannelSuspended) as caught:
        channel.send(message())

    assert "401" in caught.value.reason and caught.value.until is None
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


def test_a_forbidden_answer_suspends_the_channel(server: SendGridServer, channel: SendGridChannel) -> None:
    server.faults.script(forbidden())

    with pytest.raises(ChannelSuspended, match="SendGrid 403: access forbidden"):
        channel.send(message())


def test_invalid_recipient_is_refused_before_calling_sendgrid(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    with pytest.raises(PermanentFailure, match="invalid recipient address"):
        channel.send(message(to_email="ana.popescu@example"))

    assert server.exchanges == []


def test_sixteen_threads_share_one_channel_and_every_message_arrives_once(
    server: SendGridServer, channel: SendGridChannel
) -> None:
    def send(n: int) -> str | None:
        headers = {"X-Tidings-Campaign": "holiday", "X-Tidings-Delivery": str(n)}
        return channel.send(message(headers=headers)).provider_message_id

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(send, range(64)))

    delivered = sorted(
        int(mail.body["personalizations"][0]["custom_args"]["delivery_id"]) for mail in server.accepted
    )
    assert delivered == list(range(64))
    assert len(set(ids)) == 64


def _valid_body() -> dict[str, Any]:
    return mail_body(message())


def _many_recipients(body: dict[str, Any]) -> None:
    body["personalizations"] = [
        {"to": [{"email": f"c{p}-{n}@example.com"} for n in range(501)]} for p in range(2)
    ]


@pytest.mark.parametrize(
    ("spoil", "status", "field"),
    [
        (_many_recipients, 400, "personalizations"),
        (lambda b: b["personalizations"][0].update(custom_args={"k": "v" * 10_000}), 400, "custom_args"),
        (lambda b: b.update(categories=[f"c{n}" for n in range(11)]), 400, "categories"),
        (lambda b: b.update(send_at=int(time.time()) + 73 * 3600), 400, "send_at"),
        (lambda b: b.update(content=list(reversed(b["content"]))), 400, "content"),
        (lambda b: b.update(html_padding="x" * (30 * 1024 * 1024)), 413, None),
    ],
    ids=["1001-recipients", "custom-args-10kb", "11-categories", "send-at-73h", "html-before-text", "30mb"],
)
def test_compatible_server_refuses_what_sendgrid_documents_as_invalid(
    server: SendGridServer, spoil: Callable[[dict[str, Any]], None], status: int, field: str | None
) -> None:
    body = _valid_body()
    spoil(body)

    response = httpx.post(
        server.url + "/v3/mail/send", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )

    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["message"]
    if field is not None:
        assert field in (error["field"] or "")
    assert server.accepted == []


def test_compatible_server_accepts_top_level_custom_args_as_the_real_api_does(server: SendGridServer) -> None:
    body = _valid_body() | {"custom_args": {"source": "tidings"}}

    response = httpx.post(
        server.url + "/v3/mail/send", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )

    assert response.status_code == 202
    assert response.headers["X-Message-Id"] == server.accepted[0].message_id
