"""An X-compatible ``POST /2/tweets`` on 127.0.0.1.

Requires an OAuth 1.0a ``Authorization`` header (``OAuth …`` with the consumer key and
access token the server was given, and a signature); answers 201
``{"data": {"id", "text", "edit_history_tweet_ids"}}``; the same text twice gets X's 403
duplicate-content problem body. Every answer carries ``x-rate-limit-limit``,
``-remaining`` and ``-reset`` like the real API. Faults: :func:`rate_limited` (429 with
the rate-limit headers, no Retry-After, as X does) and :func:`server_error` (500/503).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .httpbase import FakeHttpService, Fault, Reply, Request

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
LIMIT = 100
WINDOW_SECONDS = 15 * 60


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"title": title, "type": "about:blank", "status": status, "detail": detail}


def rate_limited(reset_epoch: int, limit: int = LIMIT) -> Fault:
    headers = {
        "x-rate-limit-limit": str(limit),
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(reset_epoch),
    }
    return Fault(Reply(429, _problem(429, "Too Many Requests", "Too Many Requests"), headers))


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


class XServer(FakeHttpService):
    def __init__(
        self,
        consumer_key: str = "x-consumer",
        access_token: str = "x-access",
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.access_token = access_token
        self.now = now
        self._tweets: list[Tweet] = []
        self._ids = itertools.count(1_871_000_000_000_000_001)
        self._tweets_lock = threading.Lock()

    @property
    def tweets(self) -> list[Tweet]:
        with self._tweets_lock:
            return list(self._tweets)

    def handle(self, request: Request) -> Reply:
        if request.path.split("?")[0] != "/2/tweets" or request.method != "POST":
            return Reply(404, _problem(404, "Not Found Error", "Not found"))
        oauth = oauth_params(request.header("Authorization") or "")
        required = {"oauth_consumer_key", "oauth_token", "oauth_signature", "oauth_nonce", "oauth_timestamp"}
        if (
            not required <= oauth.keys()
            or oauth["oauth_consumer_key"] != self.consumer_key
            or oauth["oauth_token"] != self.access_token
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
            duplicate = any(tweet.text == text for tweet in self._tweets)
            if not duplicate:
                tweet = Tweet(str(next(self._ids)), text, oauth)
                self._tweets.append(tweet)
        if duplicate:
            return Reply(403, _problem(403, "Forbidden", DUPLICATE_DETAIL), self._limit_headers())
        data = {"id": tweet.id, "text": tweet.text, "edit_history_tweet_ids": [tweet.id]}
        return Reply(201, {"data": data}, self._limit_headers())

    def _limit_headers(self) -> dict[str, str]:
        with self._tweets_lock:
            used = len(self._tweets)
        reset = int(self.now()) // WINDOW_SECONDS * WINDOW_SECONDS + WINDOW_SECONDS
        return {
            "x-rate-limit-limit": str(LIMIT),
            "x-rate-limit-remaining": str(max(0, LIMIT - used)),
            "x-rate-limit-reset": str(reset),
        }

    def reset(self) -> None:
        super().reset()
        with self._tweets_lock:
            self._tweets.clear()
