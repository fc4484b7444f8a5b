"""Rate limits shared by every process that sends: one bucket per channel and account.

The same behaviour on every backend (this process, a ``rate_bucket`` row on SQLite and on
PostgreSQL, a Redis hash), driven by a fake clock; then real processes and threads taking
from one bucket on the wall clock, which must hand out no more than the rate allows.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from service_checks import REDIS_URL, redis_available, require_service
from sqlalchemy.engine import Engine

from engine.clock import FakeClock, SystemClock
from engine.runtime.ratelimit import (
    RateBucket,
    RateLimiterUnavailable,
    RedisBucket,
    StoreBucket,
    TokenBucket,
    bucket_name,
    email_bucket,
    x_bucket,
)
from engine.settings import Settings
from engine.store import make_engine

Make = Callable[..., RateBucket]


@pytest.fixture
def redis_names() -> Iterator[list[str]]:
    require_service(redis_available(), "Redis")
    names: list[str] = []
    yield names
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in names:
        client.delete(f"tidings:rate:{name}")
    client.close()


SHARED = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


def _maker(where: str, request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """``make(rate, capacity, grain=1, on=clock)``: a new handle on the test's one bucket (for
    ``process``, the one bucket of this process, which has nothing to share)."""
    name = f"email:test:{uuid.uuid4().hex[:12]}"
    if where == "process":
        only: list[TokenBucket] = []

        def local(rate: float, capacity: float, grain: float = 1, on: FakeClock = clock) -> RateBucket:
            if not only:
                only.append(TokenBucket(rate, capacity, on, grain=grain))
            return only[0]

        return local
    if where in ("sqlite", "postgres"):
        engine: Engine = request.getfixturevalue("sqlite_engine" if where == "sqlite" else "pg_engine")

        def stored(rate: float, capacity: float, grain: float = 1, on: FakeClock = clock) -> RateBucket:
            return StoreBucket(engine, name, rate, capacity, on, grain=grain)

        return stored
    request.getfixturevalue("redis_names").append(name)

    def in_redis(rate: float, capacity: float, grain: float = 1, on: FakeClock = clock) -> RateBucket:
        return RedisBucket(REDIS_URL, name, rate, capacity, on, grain=grain)

    return in_redis


@pytest.fixture(params=["process", *SHARED])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """Every kind of bucket."""
    return _maker(request.param, request, clock)


@pytest.fixture(params=SHARED)
def make_shared(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """The buckets processes share (the store's and Redis's)."""
    return _maker(request.param, request, clock)


def test_a_bucket_grants_its_burst_then_refills_with_the_clock(make: Make, clock: FakeClock) -> None:
    bucket = make(10, 10)
    assert bucket.take_up_to(25) == 10
    assert bucket.take_up_to(1) == 0
    assert bucket.seconds_until(1) == pytest.approx(0.1)
    clock.advance(0.5)
    assert bucket.take_up_to(25) == 5
    clock.advance(timedelta(hours=1))
    assert bucket.take_up_to(25) == 10  # never above its capacity


def test_tokens_given_back_are_granted_again(make: Make, clock: FakeClock) -> None:
    bucket = make(10, 10)
    assert bucket.take_up_to(10) == 10
    bucket.give_back(4)
    assert bucket.take_up_to(10) == 4


def test_a_bucket_with_a_grain_grants_a_seconds_worth_at_a_time(make: Make, clock: FakeClock) -> None:
    bucket = make(50, 50, 50)
    assert bucket.take_up_to(500) == 50
    clock.advance(0.5)
    assert bucket.take_up_to(500) == 0  # 25 are there, not a grant's worth
    assert bucket.seconds_until(1) == pytest.approx(0.5)
    assert bucket.take_up_to(20) == 20  # a small send takes what it needs
    clock.advance(0.9)
    assert bucket.take_up_to(500) == 50


def test_a_providers_retry_after_blocks_everyone_until_then(make: Make, clock: FakeClock) -> None:
    first, second = make(100, 100), make(100, 100)  # two processes (or, for ``process``, one)
    first.block_until(clock.now() + timedelta(seconds=30))
    assert second.take_up_to(10) == 0
    assert second.seconds_until(1) == pytest.approx(30.01)
    clock.advance(29.9)
    assert first.take_up_to(1) == 0
    clock.advance(0.15)
    assert second.take_up_to(100) == 5  # it refills from zero once the block ends


def test_a_429_without_a_reset_empties_the_bucket(make: Make, clock: FakeClock) -> None:
    bucket = make(10, 10)
    bucket.block_until(None)
    assert bucket.take_up_to(10) == 0
    clock.advance(0.3)
    assert bucket.take_up_to(10) == 3


def test_a_clock_stepped_far_back_re_anchors_the_bucket_instead_of_freezing_it(
    make_shared: Make, clock: FakeClock
) -> None:
    ahead = make_shared(10, 10, on=FakeClock(clock.now() + timedelta(minutes=5)))  # a host five minutes ahead
    assert ahead.take_up_to(10) == 10
    bucket = make_shared(10, 10)
    assert bucket.take_up_to(10) == 0
    clock.advance(1)
    assert bucket.take_up_to(10) == 10


def test_handles_on_one_store_share_one_balance(store_engine: Engine, clock: FakeClock) -> None:
    name = f"email:test:{uuid.uuid4().hex[:8]}"
    one = StoreBucket(store_engine, name, 10, 10, clock)
    two = StoreBucket(store_engine, name, 10, 10, clock)
    other = StoreBucket(store_engine, name + "-other-account", 10, 10, clock)
    assert one.take_up_to(6) == 6
    assert two.take_up_to(6) == 4
    assert other.take_up_to(6) == 6


def test_buckets_are_named_per_account_and_never_carry_a_secret(tmp_path: Path) -> None:
    base: dict[str, Any] = {"workspace": tmp_path, "email_channel": "sendgrid", "secret_key": "k" * 40}
    one = Settings(**base, sendgrid_api_key="SG.first-account-key")
    same = Settings(**base, sendgrid_api_key="SG.first-account-key", concurrency=3)
    other = Settings(**base, sendgrid_api_key="SG.second-account-key")
    assert bucket_name(one, "email") == bucket_name(same, "email")
    assert bucket_name(one, "email") != bucket_name(other, "email")
    assert bucket_name(one, "email").startswith("email:sendgrid:")
    assert "first-account" not in bucket_name(one, "email")


def test_on_the_wall_clock_the_dispatchers_buckets_are_shared_and_on_a_fake_one_local(
    tmp_path: Path, sqlite_engine: Engine, clock: FakeClock
) -> None:
    settings = Settings(workspace=tmp_path, secret_key="k" * 40)
    assert isinstance(email_bucket(settings, SystemClock(), sqlite_engine), StoreBucket)
    assert isinstance(email_bucket(settings, clock, sqlite_engine), TokenBucket)  # a simulation's own
    local = Settings(workspace=tmp_path, secret_key="k" * 40, rate_limiter="process")
    assert isinstance(x_bucket(local, SystemClock(), sqlite_engine), TokenBucket)


@pytest.mark.redis
def test_with_a_redis_broker_the_buckets_live_in_redis(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, secret_key="k" * 40, broker_url=REDIS_URL)
    assert isinstance(email_bucket(settings, SystemClock(), None), RedisBucket)


def test_an_unreachable_redis_is_one_line_without_its_password(clock: FakeClock) -> None:
    bucket = RedisBucket("redis://:hunter2@127.0.0.1:9/0", "email:test:down", 10, 10, clock)
    with pytest.raises(RateLimiterUnavailable) as caught:
        bucket.take_up_to(1)
    assert "hunter2" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)
    assert "\n" not in str(caught.value)


# --- real processes and threads on the wall clock -----------------------------------------------

RATE = 40.0
SECONDS = 4.0


def _take_for(kind: str, target: str, name: str, go: Any, seconds: float, out: Any) -> None:
    """A process with four threads taking batches from one bucket until ``seconds`` pass."""
    import threading
    import time

    clock = SystemClock()
    engine = make_engine(target) if kind == "store" else None
    granted: list[tuple[float, int]] = []
    lock = threading.Lock()

    def bucket() -> RateBucket:
        if engine is not None:
            return StoreBucket(engine, name, RATE, RATE, clock, grain=RATE)
        return RedisBucket(target, name, RATE, RATE, clock, grain=RATE)

    def run() -> None:
        mine = bucket()
        while (now := time.time()) < start + seconds:
            got = mine.take_up_to(500)  # as a dispatcher asks for a batch
            if got:
                with lock:
                    granted.append((now, got))
            else:
                time.sleep(min(0.2, mine.seconds_until(1)))

    out.put("ready")
    start = go.get()  # everyone starts at one wall time, once every process has imported the engine
    time.sleep(max(0.0, start - time.time()))
    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(sum(count for _, count in granted))
    if engine is not None:
        engine.dispose()


def _shared_total(kind: str, target: str) -> int:
    import time

    context = multiprocessing.get_context("spawn")
    name = f"email:test:{uuid.uuid4().hex[:12]}"
    results, go = context.Queue(), context.Queue()
    processes = [
        context.Process(target=_take_for, args=(kind, target, name, go, SECONDS, results)) for _ in range(2)
    ]
    for process in processes:
        process.start()
    assert [results.get(timeout=120) for _ in processes] == ["ready"] * len(processes)
    start = time.time() + 0.5
    for _ in processes:
        go.put(start)
    total = sum(int(results.get(timeout=60)) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    if kind == "redis":
        import redis

        redis.Redis.from_url(target).delete(f"tidings:rate:{name}")
    return total


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_two_processes_of_four_threads_share_one_rate(where: str, request: pytest.FixtureRequest) -> None:
    if where == "redis":
        require_service(redis_available(), "Redis")
        kind, target = "redis", REDIS_URL
    else:
        engine: Engine = request.getfixturevalue("sqlite_engine" if where == "sqlite" else "pg_engine")
        kind, target = "store", engine.url.render_as_string(hide_password=False)
    total = _shared_total(kind, target)
    ceiling = RATE + RATE * SECONDS  # the burst, then the rate: what one bucket may ever grant
    assert total <= ceiling
    # and the eight takers, who always wanted more, got most of it: the bucket starves no one (a
    # loaded machine can wake them late, so this is the loose bound; the strict one is above)
    assert total >= 0.8 * RATE * SECONDS
