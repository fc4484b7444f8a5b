"""The X channel through the real tweepy client against an X-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers.sendgrid_server import slow
from servers.x_server import XServer, rate_limited, server_error

from engine.channels import PermanentFailure, RateLimited, TransientFailure, social_channel_for
from engine.channels.x import XChannel
from engine.clock import FakeClock
from engine.message import SocialPost
from engine.settings import Settings

CONSUMER_KEY = "consumer-key-public-part"
CONSUMER_SECRET = "consumer-secret-do-not-leak"
ACCESS_TOKEN = "1234-access-token"
ACCESS_SECRET = "access-secret-do-not-leak"


@pytest.fixture
def server(clock: FakeClock) -> Iterator[XServer]:
    with XServer(CONSUMER_KEY, ACCESS_TOKEN, now=lambda: clock.now().timestamp()) as running:
        yield running


def settings_for(host: str) -> Settings:
    return Settings(
        workspace=Path("."),
        social_channel="x",
        x_consumer_key=CONSUMER_KEY,
        x_consumer_secret=CONSUMER_SECRET,
        x_access_token=ACCESS_TOKEN,
        x_access_token_secret=ACCESS_SECRET,
        x_api_host=host,
        x_timeout_seconds=0.5,
    )


@pytest.fixture
def channel(server: XServer, clock: FakeClock) -> Iterator[XChannel]:
    built = social_channel_for(settings_for(server.url), now=clock.now)
    assert isinstance(built, XChannel)
    yield built
    built.close()


def post(text: str = "5 days left to order for Christmas delivery 🎄 https://shop.example.com") -> SocialPost:
    return SocialPost(text=text, campaign="shipping-countdown")


def test_post_is_published_with_oauth1_user_credentials(server: XServer, channel: XChannel) -> None:
    result = channel.post(post())

    [tweet] = server.tweets
    assert tweet.text == post().text
    assert result.provider_message_id == tweet.id
    assert tweet.oauth["oauth_consumer_key"] == CONSUMER_KEY
    assert tweet.oauth["oauth_token"] == ACCESS_TOKEN
    assert tweet.oauth["oauth_signature_method"] == "HMAC-SHA1"


def test_duplicate_text_is_a_permanent_failure_named_as_duplicate(server: XServer, channel: XChannel) -> None:
    channel.post(post("Last day for express shipping!"))

    with pytest.raises(PermanentFailure) as caught:
        channel.post(post("Last day for express shipping!"))

    assert "duplicate" in caught.value.reason
    assert len(server.tweets) == 1


def test_429_is_rate_limited_until_x_s_reset(server: XServer, channel: XChannel, clock: FakeClock) -> None:
    reset = int(clock.now().timestamp()) + 600
    server.faults.script(rate_limited(reset_epoch=reset))

    with pytest.raises(RateLimited) as caught:
        channel.post(post())

    assert caught.value.reset_at == datetime.fromtimestamp(reset, UTC)
    assert caught.value.retry_after == 600
    assert server.tweets == []


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(server: XServer, channel: XChannel, status: int) -> None:
    server.faults.script(server_error(status))

    with pytest.raises(TransientFailure) as caught:
        channel.post(post())

    assert not isinstance(caught.value, RateLimited)
    assert str(status) in caught.value.reason


def test_a_server_slower_than_the_timeout_is_transient(server: XServer, channel: XChannel) -> None:
    server.faults.script(slow(30))

    with pytest.raises(TransientFailure, match="timed out"):
        channel.post(post())


def test_wrong_credentials_are_permanent_and_no_secret_appears_in_the_error(
    server: XServer, clock: FakeClock
) -> None:
    server.access_token = "someone-else"
    channel = XChannel.from_settings(settings_for(server.url), now=clock.now)

    with pytest.raises(PermanentFailure) as caught:
        channel.post(post())

    assert "401" in caught.value.reason
    for secret in (CONSUMER_SECRET, ACCESS_SECRET, ACCESS_TOKEN):
        assert secret not in str(caught.value)
    channel.close()


def test_an_unreachable_host_is_transient(clock: FakeClock) -> None:
    with XServer() as gone:
        host = gone.url
    channel = XChannel.from_settings(settings_for(host), now=clock.now)

    with pytest.raises(TransientFailure, match="unreachable"):
        channel.post(post())
    channel.close()
