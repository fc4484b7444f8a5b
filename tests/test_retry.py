"""Retry timing: exponential backoff with jitter, provider resets, permanent errors, attempt limit."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from engine.runtime.retry import RetryPolicy, backoff_seconds, decide_retry

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=5, max_seconds=900, max_attempts=8)


def test_backoff_doubles_per_attempt_within_jitter_bounds() -> None:
    rng = random.Random(7)
    for attempt, nominal in [(1, 5), (2, 10), (3, 20), (4, 40)]:
        waits = [backoff_seconds(attempt, POLICY, rng) for _ in range(200)]
        assert min(waits) >= nominal / 2
        assert max(waits) <= nominal
        assert max(waits) - min(waits) > nominal / 4  # jitter actually spreads retries


def test_backoff_never_exceeds_the_configured_maximum() -> None:
    rng = random.Random(1)
    assert all(backoff_seconds(attempt, POLICY, rng) <= 900 for attempt in range(1, 200))


def test_provider_reset_wins_over_a_shorter_backoff() -> None:
    decision = decide_retry(
        attempts=1, now=NOW, policy=POLICY, transient=True, retry_after=120, rng=random.Random(3)
    )
    assert decision.retry_at is not None
    assert NOW + timedelta(seconds=120) <= decision.retry_at <= NOW + timedelta(seconds=121)


def test_provider_reset_given_as_an_instant_is_honoured() -> None:
    reset = NOW + timedelta(minutes=15)
    decision = decide_retry(attempts=2, now=NOW, policy=POLICY, transient=True, retry_after=reset)
    assert decision.retry_at is not None and decision.retry_at >= reset


def test_permanent_error_is_not_retried() -> None:
    decision = decide_retry(attempts=1, now=NOW, policy=POLICY, transient=False)
    assert decision.gives_up and decision.reason == "permanent"


def test_transient_error_gives_up_after_max_attempts() -> None:
    assert not decide_retry(attempts=7, now=NOW, policy=POLICY, transient=True).gives_up
    last = decide_retry(attempts=8, now=NOW, policy=POLICY, transient=True)
    assert last.gives_up and last.reason == "max_attempts"
