"""Posts to X (API v2) through tweepy's ``Client.create_tweet``, with OAuth 1.0a user context.

tweepy hard-codes ``https://api.twitter.com`` and sets no timeout. A transport adapter
(:class:`RehostAdapter`) mounted on that prefix in the client's ``requests`` session
rewrites each request to ``TIDINGS_X_API_HOST`` (a compatible server in tests; the real
host in production, where the rewrite is a no-op) and applies ``TIDINGS_X_TIMEOUT_SECONDS``.
The OAuth 1.0a signature is computed for the public URL before the adapter runs, which
is what the real API verifies.

Classification (see :mod:`engine.channels.base`):

- 429 → :class:`RateLimited` with ``x-rate-limit-reset`` (X sends no Retry-After). Never
  ``wait_on_rate_limit=True``: it sleeps inside the call, holding a dispatcher thread for
  up to 15 minutes, and retries without bound.
- 403 → :class:`PermanentFailure`; "duplicate content" is named as such, since posting the
  same text again is refused for good.
- other 4xx (400 invalid text, 401 bad credentials, 404) → :class:`PermanentFailure`.
- 5xx, timeouts, connection errors → :class:`TransientFailure`.

Threads: ``requests.Session`` is not documented as thread-safe, so each dispatcher thread
gets its own tweepy client; posting volumes are small, so the cost is irrelevant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
import tweepy
from requests.adapters import HTTPAdapter

from engine.channels.base import (
    Now,
    PermanentFailure,
    PerThread,
    RateLimited,
    TransientFailure,
    one_line,
    rate_limit_hint,
    system_now,
)
from engine.message import SendResult, SocialPost
from engine.settings import Settings

TWEEPY_HOST = "https://api.twitter.com"


class RehostAdapter(HTTPAdapter):
    """Sends requests meant for ``https://api.twitter.com`` to ``host`` instead, with a timeout."""

    def __init__(self, host: str, timeout: float) -> None:
        super().__init__()
        self.host = host.rstrip("/")
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if request.url and request.url.startswith(TWEEPY_HOST):
            request.url = self.host + request.url[len(TWEEPY_HOST) :]
        kwargs["timeout"] = self.timeout
        if args:  # (stream, timeout, verify, cert, proxies): keep ours for the timeout
            args = (args[0], self.timeout, *args[2:])
        return super().send(request, *args, **kwargs)


class XCredentials:
    """The four OAuth 1.0a keys, held as plain strings only inside the channel."""

    def __init__(
        self, consumer_key: str, consumer_secret: str, access_token: str, access_token_secret: str
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret

    def secrets(self) -> list[str]:
        return [self.consumer_key, self.consumer_secret, self.access_token, self.access_token_secret]

    def __repr__(self) -> str:
        return "XCredentials(***)"


class XChannel:
    """Publishes a :class:`SocialPost` as a post on X; the provider id is the post id."""

    name = "x"

    def __init__(
        self, credentials: XCredentials, *, host: str, timeout: float, now: Now = system_now
    ) -> None:
        self._credentials = credentials
        self.host = host.rstrip("/")
        self.timeout = timeout
        self._now = now
        self._clients: PerThread[tweepy.Client] = PerThread(self._new_client, lambda c: c.session.close())

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Now = system_now) -> XChannel:
        keys = (
            settings.x_consumer_key,
            settings.x_consumer_secret,
            settings.x_access_token,
            settings.x_access_token_secret,
        )
        if any(key is None for key in keys):
            raise PermanentFailure("X credentials are incomplete (TIDINGS_X_* settings)")
        credentials = XCredentials(*(key.get_secret_value() for key in keys if key is not None))
        return cls(credentials, host=str(settings.x_api_host), timeout=settings.x_timeout_seconds, now=now)

    def _new_client(self) -> tweepy.Client:
        client = tweepy.Client(
            consumer_key=self._credentials.consumer_key,
            consumer_secret=self._credentials.consumer_secret,
            access_token=self._credentials.access_token,
            access_token_secret=self._credentials.access_token_secret,
            wait_on_rate_limit=False,
        )
        client.session.mount(TWEEPY_HOST, RehostAdapter(self.host, self.timeout))
        return client

    def post(self, post: SocialPost) -> SendResult:
        if not post.text.strip():
            raise PermanentFailure("the post is empty")
        try:
            response = self._clients.get().create_tweet(text=post.text, user_auth=True)
        except tweepy.TooManyRequests as exc:
            retry_after, reset_at = rate_limit_hint(
                self._now(), reset_epoch=_header(exc.response.headers, "x-rate-limit-reset")
            )
            raise RateLimited(self._reason(exc, "X rate limit reached"), retry_after, reset_at) from None
        except tweepy.Forbidden as exc:
            duplicate = any("duplicate" in str(message).lower() for message in exc.api_messages)
            prefix = "X refused a duplicate post" if duplicate else "X 403"
            raise PermanentFailure(self._reason(exc, prefix)) from None
        except tweepy.TwitterServerError as exc:
            raise TransientFailure(self._reason(exc, f"X {exc.response.status_code}")) from None
        except tweepy.HTTPException as exc:
            status = exc.response.status_code
            failure = TransientFailure if status == 408 else PermanentFailure
            raise failure(self._reason(exc, f"X {status}")) from None
        except requests.Timeout:
            raise TransientFailure(f"X timed out after {self.timeout:g} s") from None
        except requests.RequestException as exc:
            self._clients.discard()
            raise TransientFailure(
                one_line(f"X unreachable: {type(exc).__name__}", self._credentials.secrets())
            ) from None
        except tweepy.TweepyException as exc:
            raise PermanentFailure(one_line(f"X: {exc}", self._credentials.secrets())) from None
        data = response.data if hasattr(response, "data") else None
        post_id = str(data["id"]) if isinstance(data, Mapping) and data.get("id") is not None else None
        return SendResult(provider_message_id=post_id, accepted_at=self._now(), detail=None)

    def _reason(self, exc: tweepy.HTTPException, prefix: str) -> str:
        said = "; ".join(str(message) for message in exc.api_messages if message)
        return one_line(f"{prefix}: {said}" if said else prefix, self._credentials.secrets())

    def close(self) -> None:
        self._clients.close_all()


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return None if value is None else str(value)
