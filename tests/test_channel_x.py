"""The X channel through the real tweepy client against an X-compatible server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from servers.sendgrid_server import slow
from servers.x_server import XServer, credits_exhausted, daily_cap_reached, rate_limited, server_error

from engine.channels import (
    ChannelSuspended,
    DuplicatePost,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    TransientFailure,
    social_channel_for,
)
from engine.channels.x import XChannel, XCredentials
from engine.clock import FakeClock
from engine.message import SocialPost
from engine.settings import Settings

CONSUMER_KEY = "consumer-key-public-part"
CONSUMER_SECRET = "consumer-secret-do-not-leak"
ACCESS_TOKEN = "1234-access-token"
ACCESS_SECRET = "access-secret-do-not-leak"


@pytest.fixture
def server(clock: FakeClock) -> Iterator[XServer]:
    with XServer(
        CONSUMER_KEY,
        ACCESS_TOKEN,
        consumer_secret=CONSUMER_SECRET,
        access_token_secret=ACCESS_SECRET,
        now=lambda: clock.now().timestamp(),
    ) as running:
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


def test_duplicate_text_is_a_duplicate_post_failure(server: XServer, channel: XChannel) -> None:
    channel.post(post("Last day for express shipping!"))

    with pytest.raises(DuplicatePost) as caught:
        channel.post(post("Last day for express shipping!"))

    assert isinstance(caught.value, PermanentFailure)
    assert "duplicate" in caught.value.reason
    assert len(server.tweets) == 1


def test_a_post_published_while_the_client_timed_out_comes_back_as_a_duplicate(
    server: XServer, channel: XChannel
) -> None:
    server.faults.script(slow(0.8))  # answers only after the channel's 0.5 s timeout, then publishes

    with pytest.raises(OutcomeUnknown, match="may be published"):
        channel.post(post())
    deadline = time.monotonic() + 10
    while not server.tweets and time.monotonic() < deadline:  # the real server thread publishes it
        time.sleep(0.05)

    with pytest.raises(DuplicatePost):
        channel.post(post())

    assert [tweet.text for tweet in server.tweets] == [post().text]


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


def test_a_server_slower_than_the_timeout_is_an_unknown_outcome(server: XServer, channel: XChannel) -> None:
    server.faults.script(slow(30))

    with pytest.raises(OutcomeUnknown, match="timed out"):
        channel.post(post())


def test_wrong_credentials_suspend_the_channel_and_no_secret_appears_in_the_error(
    server: XServer, clock: FakeClock
) -> None:
    server.access_token = "someone-else"
    channel = XChannel.from_settings(settings_for(server.url), now=clock.now)

    with pytest.raises(ChannelSuspended) as caught:
        channel.post(post())

    assert "401" in caught.value.reason
    for secret in (CONSUMER_SECRET, ACCESS_SECRET, ACCESS_TOKEN):
        assert secret not in str(caught.value)
    channel.close()


def test_a_daily_cap_spent_is_rate_limited_until_the_24_hour_reset_not_the_15_minute_one(
    server: XServer, channel: XChannel, clock: FakeClock
) -> None:
    now = int(clock.now().timestamp())
    server.faults.script(daily_cap_reached(reset_epoch=now + 20 * 3600, window_reset_epoch=now + 900))

    with pytest.raises(RateLimited) as caught:
        channel.post(post())

    assert caught.value.reset_at == datetime.fromtimestamp(now + 20 * 3600, UTC)
    assert caught.value.retry_after == 20 * 3600
    assert "daily post cap" in caught.value.reason


def test_the_server_s_own_daily_cap_is_honoured_the_same_way(clock: FakeClock) -> None:
    with XServer(
        CONSUMER_KEY,
        ACCESS_TOKEN,
        consumer_secret=CONSUMER_SECRET,
        access_token_secret=ACCESS_SECRET,
        daily_limit=2,
        now=lambda: clock.now().timestamp(),
    ) as capped:
        channel = XChannel.from_settings(settings_for(capped.url), now=clock.now)
        channel.post(post("one"))
        channel.post(post("two"))

        with pytest.raises(RateLimited) as caught:
            channel.post(post("three"))
        channel.close()

    midnight = datetime.combine(clock.now().date() + timedelta(days=1), datetime.min.time(), UTC)
    assert caught.value.reset_at == midnight
    assert len(capped.tweets) == 2


def test_credits_exhausted_suspends_the_channel_with_its_reason(server: XServer, channel: XChannel) -> None:
    server.faults.script(credits_exhausted())

    with pytest.raises(ChannelSuspended) as caught:
        channel.post(post())

    assert caught.value.reason.startswith("X credits exhausted")
    assert caught.value.until is None
    assert server.tweets == []


def test_the_signature_covers_the_configured_host(server: XServer, clock: FakeClock) -> None:
    # The same server under another name: a signature made for any host but the one requested fails.
    other_name = server.url.replace("127.0.0.1", "localhost")
    channel = XChannel.from_settings(settings_for(other_name), now=clock.now)

    channel.post(post())
    channel.close()

    [(request, reply)] = server.exchanges
    assert request.header("Host") == other_name.removeprefix("http://")
    assert reply.status == 201


class TlsFront(HTTPAdapter):
    """A TLS-terminating front for the local X server: takes ``https://api.x.com`` requests, as sent."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        assert request.url is not None
        original = urlsplit(request.url)
        request.headers["Host"] = original.netloc
        request.headers["X-Forwarded-Proto"] = original.scheme
        request.url = self.backend + original.path + (f"?{original.query}" if original.query else "")
        return super().send(request, *args, **kwargs)


@pytest.mark.parametrize("host", ["https://api.x.com", "https://api.twitter.com"])
def test_posting_to_the_real_api_hosts_is_signed_for_that_host(
    server: XServer, clock: FakeClock, host: str
) -> None:
    credentials = XCredentials(CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_SECRET)
    channel = XChannel(
        credentials, host=host, timeout=2, now=clock.now, transport=lambda: TlsFront(server.url)
    )

    result = channel.post(post())
    channel.close()

    [(request, reply)] = server.exchanges
    assert server.signed_url(request) == f"{host}/2/tweets"
    assert reply.status == 201 and result.provider_message_id == server.tweets[0].id


def test_a_signature_made_for_another_host_is_refused_by_the_server(
    server: XServer, clock: FakeClock
) -> None:
    credentials = XCredentials(CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_SECRET)
    # Signed for api.x.com, but the front announces api.twitter.com: what the old rewrite-after-signing did.
    channel = XChannel(
        credentials,
        host="https://api.x.com",
        timeout=2,
        now=clock.now,
        transport=lambda: Announce(server.url),
    )

    with pytest.raises(ChannelSuspended, match="401"):
        channel.post(post())
    channel.close()
    assert server.tweets == []


class Announce(TlsFront):
    """A front that forwards the request under another host name than the one it was signed for."""

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        assert request.url is not None
        request.url = request.url.replace("api.x.com", "api.twitter.com")
        return super().send(request, *args, **kwargs)


def test_an_unreachable_host_is_transient(clock: FakeClock) -> None:
    with XServer() as gone:
        host = gone.url
    channel = XChannel.from_settings(settings_for(host), now=clock.now)

    with pytest.raises(TransientFailure, match="unreachable"):
        channel.post(post())
    channel.close()
