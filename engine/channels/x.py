"""Posts to X (API v2) through tweepy's ``Client.create_tweet``, with OAuth 1.0a user context.

Host: tweepy builds every URL on ``https://api.twitter.com`` and sets no timeout. The
client's ``requests`` session is a :class:`HostSession`, which moves each request to
``TIDINGS_X_API_HOST`` (``https://api.x.com``, ``https://api.twitter.com``, or a compatible
server in tests) *before* it is prepared, and applies ``TIDINGS_X_TIMEOUT_SECONDS``. So the
OAuth 1.0a signature, which covers the request's URL, is computed for the host the request
really goes to: X verifies it against that URL, and a signature made for another host is
refused with 401.

Classification (see :mod:`engine.channels.base`):

- 429 → :class:`RateLimited` until the reset of the limit that is spent. X sends three
  families of headers: ``x-rate-limit-*`` (the endpoint's 15-minute window),
  ``x-user-limit-24hour-*`` (the user's daily posting cap) and ``x-app-limit-24hour-*`` (the
  app's). When a daily family says ``remaining: 0`` its ``reset`` (hours away) wins over the
  15-minute one: retrying every 15 minutes would spend the attempt budget long before the
  cap resets. Without any exhausted family, ``x-rate-limit-reset`` is used. X sends no
  Retry-After. Never ``wait_on_rate_limit=True``: it sleeps inside the call, holding a
  dispatcher thread, and retries without bound.
- 402 → :class:`ChannelSuspended` "X credits exhausted": pay-per-use billing has run dry and
  every post will get the same answer until someone buys credits.
- 401 (bad or revoked credentials) and 403 problems about the app or its authentication
  (``client-forbidden``, ``unsupported-authentication``) → :class:`ChannelSuspended`.
- 403 duplicate content → :class:`DuplicatePost`; the runtime treats it as proof of
  publication when the row's previous attempt was an :class:`OutcomeUnknown`.
- other 403 and 4xx (400 invalid text, 404) → :class:`PermanentFailure`.
- a read timeout (the request went out, no answer came) → :class:`OutcomeUnknown`; 5xx,
  connect timeouts and connection errors → :class:`TransientFailure`.

Threads: ``requests.Session`` is not documented as thread-safe, so each dispatcher thread
gets its own tweepy client; posting volumes are small, so the cost is irrelevant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests
import tweepy
from requests.adapters import BaseAdapter

from engine.channels.base import (
    ChannelSuspended,
    DuplicatePost,
    Now,
    OutcomeUnknown,
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
#: Rate-limit header families, most specific cap first; each has ``-limit``, ``-remaining``, ``-reset``.
LIMIT_FAMILIES = ("x-user-limit-24hour", "x-app-limit-24hour", "x-rate-limit")
#: 403 problem types that concern the app or its credentials, not the post.
CHANNEL_PROBLEMS = ("client-forbidden", "unsupported-authentication")


class HostSession(requests.Session):
    """A session that sends tweepy's ``https://api.twitter.com`` requests to ``host``, with a timeout.

    The URL is changed in :meth:`request`, before ``requests`` prepares the request and before
    the OAuth 1.0a auth signs it, so the signature covers the URL actually requested.
    """

    def __init__(self, host: str, timeout: float) -> None:
        super().__init__()
        self.host = host.rstrip("/")
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        if target.startswith(TWEEPY_HOST):
            target = self.host + target[len(TWEEPY_HOST) :]
        kwargs["timeout"] = self.timeout
        verb = method.decode() if isinstance(method, bytes) else method
        return super().request(verb, target, *args, **kwargs)


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
    """Publishes a :class:`SocialPost` as a post on X; the provider id is the post id.

    ``transport``: a factory of the ``requests`` adapter to mount on the API host, for a
    deployment that must reach X through something other than a direct connection (tests
    put a TLS-terminating front before their X-compatible server this way).
    """

    name = "x"

    def __init__(
        self,
        credentials: XCredentials,
        *,
        host: str,
        timeout: float,
        now: Now = system_now,
        transport: Callable[[], BaseAdapter] | None = None,
    ) -> None:
        self._credentials = credentials
        self.host = host.rstrip("/")
        self.timeout = timeout
        self._now = now
        self._transport = transport
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
        client.session.close()
        client.session = HostSession(self.host, self.timeout)
        if self._transport is not None:
            client.session.mount(self.host, self._transport())
        return client

    def post(self, post: SocialPost) -> SendResult:
        if not post.text.strip():
            raise PermanentFailure("the post is empty")
        try:
            response = self._clients.get().create_tweet(text=post.text, user_auth=True)
        except tweepy.TooManyRequests as exc:
            raise self._rate_limited(exc) from None
        except tweepy.Unauthorized as exc:
            raise ChannelSuspended(self._reason(exc, "X 401: the credentials were refused")) from None
        except tweepy.Forbidden as exc:
            if any("duplicate" in str(message).lower() for message in exc.api_messages):
                raise DuplicatePost(self._reason(exc, "X refused a duplicate post")) from None
            if _problem_type(exc.response).endswith(CHANNEL_PROBLEMS):
                raise ChannelSuspended(self._reason(exc, "X 403")) from None
            raise PermanentFailure(self._reason(exc, "X 403")) from None
        except tweepy.TwitterServerError as exc:
            raise TransientFailure(self._reason(exc, f"X {exc.response.status_code}")) from None
        except tweepy.HTTPException as exc:
            status = exc.response.status_code
            if status == 402:
                raise ChannelSuspended(self._reason(exc, "X credits exhausted")) from None
            failure = TransientFailure if status == 408 else PermanentFailure
            raise failure(self._reason(exc, f"X {status}")) from None
        except requests.ConnectTimeout:
            self._clients.discard()
            raise TransientFailure(f"X unreachable: no connection within {self.timeout:g} s") from None
        except requests.Timeout:
            self._clients.discard()
            raise OutcomeUnknown(
                f"X timed out after {self.timeout:g} s waiting for an answer: the post may be published"
            ) from None
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

    def _rate_limited(self, exc: tweepy.TooManyRequests) -> RateLimited:
        """Until the reset of the spent limit, the daily caps first (see the module docstring)."""
        headers = exc.response.headers
        now = self._now()
        spent: list[tuple[datetime, float, str]] = []
        for family in LIMIT_FAMILIES:
            if (_header(headers, f"{family}-remaining") or "").strip() != "0":
                continue
            retry_after, reset_at = rate_limit_hint(now, reset_epoch=_header(headers, f"{family}-reset"))
            if reset_at is not None and retry_after is not None:
                spent.append((reset_at, retry_after, family))
        if spent:
            reset_at, retry_after, family = max(spent)
            what = {
                "x-user-limit-24hour": "X daily post cap reached for the user",
                "x-app-limit-24hour": "X daily post cap reached for the app",
            }.get(family, "X rate limit reached")
            return RateLimited(self._reason(exc, what), retry_after, reset_at)
        retry_after, reset_at = rate_limit_hint(now, reset_epoch=_header(headers, "x-rate-limit-reset"))
        return RateLimited(self._reason(exc, "X rate limit reached"), retry_after, reset_at)

    def _reason(self, exc: tweepy.HTTPException, prefix: str) -> str:
        said = "; ".join(str(message) for message in exc.api_messages if message)
        return one_line(f"{prefix}: {said}" if said else prefix, self._credentials.secrets())

    def close(self) -> None:
        self._clients.close_all()


def _problem_type(response: requests.Response) -> str:
    """The ``type`` of an X problem body (``https://api.twitter.com/2/problems/…``), or ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    kind = body.get("type") if isinstance(body, Mapping) else None
    return kind if isinstance(kind, str) else ""


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return None if value is None else str(value)
