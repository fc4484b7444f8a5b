"""Token buckets per channel, driven by the injected clock."""

from __future__ import annotations

import threading
from datetime import timedelta

from engine.clock import FakeClock
from engine.runtime.ratelimit import TokenBucket, x_bucket
from engine.settings import Settings


def test_bucket_allows_a_burst_of_its_capacity_then_refuses(clock: FakeClock) -> None:
    bucket = TokenBucket(10, 10, clock)
    assert bucket.take_up_to(25) == 10
    assert not bucket.try_take()
    assert bucket.seconds_until(1) == 0.1


def test_bucket_refills_as_the_clock_moves(clock: FakeClock) -> None:
    bucket = TokenBucket(10, 10, clock)
    bucket.take_up_to(10)
    clock.advance(0.5)
    assert bucket.available() == 5
    clock.advance(timedelta(hours=1))
    assert bucket.available() == 10  # never above capacity


def test_bucket_hands_out_each_token_once_across_threads(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 1000, clock)
    taken: list[bool] = []

    def worker() -> None:
        for _ in range(200):
            taken.append(bucket.try_take())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) == 1000


def test_x_bucket_spreads_posts_over_fifteen_minutes(clock: FakeClock) -> None:
    bucket = x_bucket(Settings(x_posts_per_15min=3), clock)
    assert bucket.take_up_to(10) == 3
    clock.advance(timedelta(minutes=5))
    assert bucket.take_up_to(10) == 1
