"""An X-compatible ``POST /2/tweets`` on 127.0.0.1.

Requires an OAuth 1.0a ``Authorization`` header with the consumer key and access token
the server was given and a valid HMAC-SHA1 signature, verified (with ``oauthlib``) against
the URL the request was sent to: ``{scheme}://{Host header}{path}``, the scheme being
``X-Forwarded-Proto`` when a TLS-terminating front set it, else ``http``. A signature made
for any other URL (another host, another scheme) gets 401, as on the real API. Answers
201 ``{"data": {"id", "text", "edit_history_tweet_ids"}}``; the same text twice gets X's
403 duplicate-content problem body.

Every answer carries the 15-minute window (``x-rate-limit-limit``, ``-remaining``,
``-reset``) and the user's daily cap (``x-user-limit-24hour-limit``, ``-remaining``,
``-reset``) like the real API; a post beyond the daily cap gets 429. Faults:
:func:`rate_limited` (429 on the 15-minute window, no Retry-After, as X does),
:func:`daily_cap_reached` (429 with the 24-hour family spent), :func:`credits_exhausted`
(402), :func:`server_error` (500/503).
"""

from __future__ import annotations

import hmac
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from .httpbase import FakeHttpService, Fault, Reply, Request

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
LIMIT = 100
WINDOW_SECONDS = 15 * 60
DAILY_LIMIT = 17  # the smallest daily user cap X has published (the legacy free tier)
DAY_SECONDS = 24 * 3600
CREDITS_DETAIL = "Your enrolled account does not have any credits to fulfill this request."


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"title": title, "type": "about:blank", "status": status, "detail": detail}


def rate_limited(reset_epoch: int, limit: int = LIMIT) -> Fault:
    headers = {
        "x-rate-limit-limit": str(limit),
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(reset_epoch),
    }
    return Fault(Reply(429, _problem(429, "Too Many Requests", "Too Many Requests"), headers))


def daily_cap_reached(reset_epoch: int, window_reset_epoch: int, limit: int = DAILY_LIMIT) -> Fault:
    """429 with the user's 24-hour cap spent (its reset hours away) and the 15-minute window not."""
    headers = {
        "x-rate-limit-limit": str(LIMIT),
        "x-rate-limit-remaining": str(LIMIT - 1),
        "x-rate-limit-reset": str(window_reset_epoch),
        "x-user-limit-24hour-limit": str(limit),
        "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(reset_epoch),
    }
    return Fault(Reply(429, _problem(429, "Too Many Requests", "Too Many Requests"), headers))


def credits_exhausted() -> Fault:
    """402: the account's pay-per-use credits are spent."""
    body = _problem(402, "CreditsDepleted", CREDITS_DETAIL) | {
        "type": "https://api.twitter.com/2/problems/credits"
    }
    return Fault(Reply(402, body))


def server_error(status: int = 503) -> Fault:
    title = {500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Server Error")
    return Fault(Reply(status, _problem(status, title, title)))


def oauth_params(authorization: str) -> dict[str, str]:
    """The ``oauth_*`` parameters of an ``OAuth k="v", …`` header."""
    if not authorization.startswith("OAuth "):
        return {}
    params = {}
    for part in authorization[len("OAuth ") :].split(","):
        key, _, value = part.strip().partition("=")
        params[unquote(key)] = unquote(value.strip('"'))
    return params


@dataclass(frozen=True)
class Tweet:
    id: str
    text: str
    oauth: dict[str, str]
    posted_at: float = 0.0


class XServer(FakeHttpService):
    def __init__(
        self,
        consumer_key: str = "x-consumer",
        access_token: str = "x-access",
        *,
        consumer_secret: str = "x-consumer-secret",
        access_token_secret: str = "x-access-secret",
        daily_limit: int = 10_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.access_token = access_token
        self.consumer_secret = consumer_secret
        self.access_token_secret = access_token_secret
        self.daily_limit = daily_limit
        self.now = now
        self._tweets: list[Tweet] = []
        self._ids = itertools.count(1_871_000_000_000_000_001)
        self._tweets_lock = threading.Lock()

    @property
    def tweets(self) -> list[Tweet]:
        with self._tweets_lock:
            return list(self._tweets)

    def signed_url(self, request: Request) -> str:
        """The URL the client sent ``request`` to, as the signature must cover it."""
        scheme = (request.header("X-Forwarded-Proto") or "http").lower()
        return f"{scheme}://{request.header('Host') or ''}{request.path}"

    def signature_valid(self, request: Request, authorization: str) -> bool:
        url = self.signed_url(request)
        params = oauth_signature.collect_parameters(
            uri_query=urlsplit(url).query,
            headers={"Authorization": authorization},
            exclude_oauth_signature=True,
        )
        base = oauth_signature.signature_base_string(
            request.method, oauth_signature.base_string_uri(url), oauth_signature.normalize_parameters(params)
        )
        keys = SimpleNamespace(
            client_secret=self.consumer_secret, resource_owner_secret=self.access_token_secret
        )
        expected = oauth_signature.sign_hmac_sha1_with_client(base, keys)
        return hmac.compare_digest(expected, oauth_params(authorization).get("oauth_signature", ""))

    def handle(self, request: Request) -> Reply:
        if request.path.split("?")[0] != "/2/tweets" or request.method != "POST":
            return Reply(404, _problem(404, "Not Found Error", "Not found"))
        authorization = request.header("Authorization") or ""
        oauth = oauth_params(authorization)
        required = {"oauth_consumer_key", "oauth_token", "oauth_signature", "oauth_nonce", "oauth_timestamp"}
        if (
            not required <= oauth.keys()
            or oauth["oauth_consumer_key"] != self.consumer_key
            or oauth["oauth_token"] != self.access_token
            or not self.signature_valid(request, authorization)
        ):
            return Reply(401, _problem(401, "Unauthorized", "Unauthorized"), self._limit_headers())
        try:
            text = request.json()["text"]
        except (ValueError, KeyError, TypeError):
            body = {
                "errors": [{"message": "$.text: is missing but it is required"}],
                "title": "Invalid Request",
            }
            return Reply(400, body | {"detail": "One or more parameters to your request was invalid."})
        with self._tweets_lock:
            capped = self._posted_today() >= self.daily_limit
            duplicate = any(tweet.text == text for tweet in self._tweets)
            if not duplicate and not capped:
                tweet = Tweet(str(next(self._ids)), text, oauth, self.now())
                self._tweets.append(tweet)
        if capped:
            return Reply(429, _problem(429, "Too Many Requests", "Too Many Requests"), self._limit_headers())
        if duplicate:
            return Reply(403, _problem(403, "Forbidden", DUPLICATE_DETAIL), self._limit_headers())
        data = {"id": tweet.id, "text": tweet.text, "edit_history_tweet_ids": [tweet.id]}
        return Reply(201, {"data": data}, self._limit_headers())

    def _posted_today(self) -> int:
        day = int(self.now()) // DAY_SECONDS
        return sum(1 for tweet in self._tweets if int(tweet.posted_at) // DAY_SECONDS == day)

    def _limit_headers(self) -> dict[str, str]:
        with self._tweets_lock:
            used = len(self._tweets)
            today = self._posted_today()
        now = int(self.now())
        reset = now // WINDOW_SECONDS * WINDOW_SECONDS + WINDOW_SECONDS
        return {
            "x-rate-limit-limit": str(LIMIT),
            "x-rate-limit-remaining": str(max(0, LIMIT - used)),
            "x-rate-limit-reset": str(reset),
            "x-user-limit-24hour-limit": str(self.daily_limit),
            "x-user-limit-24hour-remaining": str(max(0, self.daily_limit - today)),
            "x-user-limit-24hour-reset": str(now // DAY_SECONDS * DAY_SECONDS + DAY_SECONDS),
        }

    def reset(self) -> None:
        super().reset()
        with self._tweets_lock:
            self._tweets.clear()
