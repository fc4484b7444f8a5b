"""When to try a failed send again.

Exponential backoff with jitter: attempt *n* waits between half and all of
``min(retry_max, retry_base * 2**(n-1))`` seconds ("equal jitter"), so a burst of
failures spreads out instead of hammering a recovering provider in lock-step, and
no retry comes sooner than half its nominal delay.

A provider's own reset (``Retry-After``, ``x-rate-limit-reset``) wins over our
schedule: retrying before it only earns another 429. A permanent failure (a 4xx
other than 429) is never retried, and after ``max_attempts`` send attempts the row
fails with its last error.

Pure functions: the caller passes the time and, in tests, a seeded ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 5.0
    max_seconds: float = 900.0
    max_attempts: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``retry_at`` is set when the row goes back to ``retry``; ``None`` means it fails for good."""

    retry_at: datetime | None
    reason: str

    @property
    def gives_up(self) -> bool:
        return self.retry_at is None


def backoff_seconds(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """The wait after the ``attempt``-th failed attempt (1-based), jittered into [d/2, d]."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    # Cap the exponent first: 2**attempt overflows float for absurd attempt counts.
    nominal = min(policy.max_seconds, policy.base_seconds * (2 ** min(attempt - 1, 62)))
    draw = (rng or random).random()
    return nominal / 2 + draw * nominal / 2


def provider_wait_seconds(retry_after: float | timedelta | datetime | None, now: datetime) -> float | None:
    """A provider's reset as seconds from ``now``: a number of seconds, a duration or an instant."""
    if retry_after is None:
        return None
    if isinstance(retry_after, datetime):
        return max(0.0, (retry_after - now).total_seconds())
    if isinstance(retry_after, timedelta):
        return max(0.0, retry_after.total_seconds())
    return max(0.0, float(retry_after))


def decide_retry(
    *,
    attempts: int,
    now: datetime,
    policy: RetryPolicy,
    transient: bool,
    retry_after: float | timedelta | datetime | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """What to do after a failed attempt; ``attempts`` counts the attempts made, this one included.

    Examples:
        A 500 on the first attempt with base 5 s retries 2.5–5 s later; a 429 with
        ``retry_after=60`` retries 60 s later even on the first attempt; a 400 gives up.
    """
    if not transient:
        return RetryDecision(None, "permanent")
    if attempts >= policy.max_attempts:
        return RetryDecision(None, "max_attempts")
    provider = provider_wait_seconds(retry_after, now)
    if provider is not None:
        # Honour the reset exactly, plus a little jitter so every worker does not wake at once.
        wait = provider + (rng or random).random() * min(1.0, policy.base_seconds)
        return RetryDecision(now + timedelta(seconds=wait), "provider_reset")
    return RetryDecision(now + timedelta(seconds=backoff_seconds(attempts, policy, rng)), "backoff")
