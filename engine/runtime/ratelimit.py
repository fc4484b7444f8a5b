"""Token buckets that keep each channel under its provider's rate, whatever sends.

A provider meters an *account*: two workers of two threads each, each with its own bucket
at 50/s, sent 197/s to one SendGrid account. So a bucket is named after its channel and
account (:func:`bucket_name`: the channel plus a digest of the credentials, never the
credentials) and lives where every process that sends can reach it:

* :class:`RedisBucket` — a hash in the broker's Redis; every operation is one Lua script, so
  it is atomic in Redis whatever the number of processes and threads (``TIDINGS_RATE_LIMITER``
  ``auto`` picks it when ``TIDINGS_BROKER_URL`` is ``redis://``).
* :class:`StoreBucket` — a ``rate_bucket`` row, read and written in one transaction that holds
  its row lock (``SELECT … FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): without
  Redis, what every process of one store shares.
* :class:`TokenBucket` — this process alone. A fake or simulated clock always gets one (a
  simulated season must never spend the live account's tokens), and so does
  ``TIDINGS_RATE_LIMITER=process``.

All three refill at ``rate`` tokens per second up to ``capacity`` on the injected
:class:`~engine.clock.Clock`, and answer the same four calls the dispatcher makes:
:meth:`take_up_to`, :meth:`give_back`, :meth:`seconds_until`, :meth:`block_until`.

Grants, and the trade-off behind them: a shared bucket costs a round trip per call, and a
dispatcher that takes one token whenever one is there claims one row per wake-up (three SQL
statements per message at 50/s). A wall-clock bucket therefore grants half a second's worth at
a time (:data:`GRANT_SECONDS`; at least one token, at most ``capacity``): ``take_up_to`` grants
nothing until that many are there (or all that was asked for, when less), then all there is up
to what was asked, and ``seconds_until`` says when a grant will be there. A rate of 100/s then
costs about two grants and two claims of 50 rows a second. Half, not a whole second's worth:
the bucket holds one second's worth, so a taker that wakes up to half a second late (a
scheduler's jitter, another worker's batch giving tokens back) still finds every token the
bucket earned meanwhile (with grants of a whole second, two workers at 20/s delivered 16/s).
What it costs is up to half a second of latency on the first message of a small send. X's
bucket (50 per 15 minutes) still grants single posts.

Exactness: the tokens granted over any span are at most ``capacity`` plus ``rate`` times the
span, so a minute at 100/s with a one-second burst sends at most 6,100 (+1.7 %), whatever the
number of workers. Tokens given back were never used.

``block_until(moment)`` is a provider's 429: the bucket empties and refuses everyone until
``moment`` (its ``Retry-After`` or reset), then refills from zero. Without a moment it only
empties the bucket. A process remembers the block it set, so a burst of 429s from one batch
costs one write.

Warning:
    A shared bucket trusts the callers' clocks. A host whose clock is behind refills nothing
    until it catches up; one ahead refills early once (then the bucket's time is its own). A
    clock that steps back more than :data:`MAX_SKEW_SECONDS` re-anchors the bucket instead of
    freezing it. Keep hosts on NTP, as leases need anyway.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from engine.clock import Clock, SystemClock
from engine.errors import TidingsError
from engine.settings import RateLimiterKind, Settings, masked_url
from engine.store import read_only, write_transaction
from engine.store.models import RateBucket as RateBucketRow

X_WINDOW_SECONDS = 15 * 60
#: A wall-clock bucket grants this many seconds' worth of tokens at a time (see the module docstring).
GRANT_SECONDS = 0.5
#: A bucket whose time is further ahead of a caller's clock than this re-anchors on that clock.
MAX_SKEW_SECONDS = 5.0
#: A refused take's wait is reused by a ``seconds_until`` asked right after it (one round trip, not two).
WAIT_MEMO_SECONDS = 0.05
REDIS_PREFIX = "tidings:rate:"
BUCKET_TABLE: Table = RateBucketRow.__table__  # type: ignore[attr-defined]

T = TypeVar("T")


class RateLimiterUnavailable(TidingsError):
    """The shared bucket's store (Redis) does not answer; nothing was granted."""


class RateBucket(Protocol):
    """What the dispatcher asks of a channel's rate limit."""

    rate: float
    capacity: float

    def take_up_to(self, wanted: int) -> int:
        """Take up to ``wanted`` tokens; returns how many (0 until a grant's worth is there)."""
        ...

    def give_back(self, tokens: int) -> None:
        """Return tokens taken for sends that did not happen."""
        ...

    def seconds_until(self, tokens: int = 1) -> float:
        """How long until a take of ``tokens`` would be granted (0 when it would be now)."""
        ...

    def block_until(self, moment: datetime | None) -> None:
        """The provider said 429: refuse everyone until ``moment``; with None, just empty the bucket."""
        ...


# --- the arithmetic, shared by the Python buckets (the Lua script mirrors it) ---------------------


@dataclass(slots=True)
class _State:
    """A bucket at ``updated`` (epoch seconds): ``tokens`` there, refusing everyone until ``blocked``."""

    tokens: float
    updated: float
    blocked: float = 0.0

    def refill(self, now: float, rate: float, capacity: float) -> None:
        if now < self.blocked:
            return
        if now >= self.updated:
            self.tokens = min(capacity, self.tokens + (now - self.updated) * rate)
            self.updated = now
        elif self.updated - now > MAX_SKEW_SECONDS:
            self.updated = now  # this clock stepped back (or the bucket's was far ahead): re-anchor

    def wait_for(self, need: float, now: float, rate: float) -> float:
        if now < self.blocked:
            return self.blocked - now + need / rate
        return max(0.0, (need - self.tokens) / rate)

    def take(self, wanted: int, need: float, now: float, rate: float, capacity: float) -> tuple[int, float]:
        """(granted, wait): all there is up to ``wanted`` once ``need`` is there, else 0 and how long."""
        self.refill(now, rate, capacity)
        if now >= self.blocked and self.tokens + 1e-4 >= need:
            granted = max(0, min(wanted, math.floor(self.tokens + 1e-4)))
            self.tokens = max(0.0, self.tokens - granted)
            return granted, 0.0
        return 0, self.wait_for(need, now, rate)

    def give(self, tokens: int, now: float, rate: float, capacity: float) -> None:
        self.refill(now, rate, capacity)
        self.tokens = min(capacity, self.tokens + tokens)

    def block(self, until: float | None, now: float, rate: float, capacity: float) -> None:
        self.refill(now, rate, capacity)
        self.tokens = 0.0
        if until is not None and until > max(now, self.blocked):
            self.blocked = until
            self.updated = until  # it refills from zero once the block ends
        else:
            self.updated = max(self.updated, now)


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class _Grants:
    """What every bucket shares: the grant size, the wait memo and the remembered block."""

    def __init__(self, rate_per_second: float, capacity: float, clock: Clock, grain: float) -> None:
        if rate_per_second <= 0 or capacity <= 0:
            raise ValueError("a token bucket needs a positive rate and capacity")
        self.rate = float(rate_per_second)
        self.capacity = float(capacity)
        self.grain = max(1.0, min(float(grain), self.capacity))
        self._clock = clock
        self._memo_lock = threading.Lock()
        self._memo: tuple[float, float, float] | None = None  # (monotonic, need, wait)
        self._known_block = 0.0

    def _need(self, wanted: int) -> float:
        return max(1.0, min(float(wanted), self.grain))

    def _wanted_wait(self, tokens: int) -> float:
        return max(1.0, min(max(float(tokens), self.grain), self.capacity))

    def _remember_wait(self, need: float, wait: float) -> None:
        with self._memo_lock:
            self._memo = (time.monotonic(), need, wait)

    def _memo_for(self, need: float) -> float | None:
        with self._memo_lock:
            memo, self._memo = self._memo, None
        if memo is None or time.monotonic() - memo[0] > WAIT_MEMO_SECONDS or memo[1] < need:
            return None
        return memo[2]

    def _new_block(self, moment: datetime | None) -> float | None:
        """The block to write, or None when this process already set one at least as long."""
        until = _epoch(moment) if moment is not None else None
        with self._memo_lock:
            if until is not None and until <= self._known_block:
                return None
            if until is not None:
                self._known_block = until
        return until if until is not None else -1.0


class TokenBucket(_Grants):
    """A bucket in this process only. Thread-safe: the dispatcher's threads take tokens concurrently.

    ``grain`` is the smallest grant while tokens are short (1: a token whenever one is there).
    """

    def __init__(self, rate_per_second: float, capacity: float, clock: Clock, *, grain: float = 1) -> None:
        super().__init__(rate_per_second, capacity, clock, grain)
        self._state = _State(float(capacity), _epoch(clock.now()))
        self._lock = threading.Lock()

    def _now(self) -> float:
        return _epoch(self._clock.now())

    def available(self) -> int:
        """Whole tokens that could be taken right now."""
        with self._lock:
            now = self._now()
            self._state.refill(now, self.rate, self.capacity)
            return 0 if now < self._state.blocked else int(self._state.tokens + 1e-4)

    def try_take(self, tokens: int = 1) -> bool:
        """Take ``tokens`` if they are all there; never blocks."""
        with self._lock:
            now = self._now()
            state = self._state
            state.refill(now, self.rate, self.capacity)
            if now >= state.blocked and state.tokens + 1e-4 >= tokens:
                state.tokens = max(0.0, state.tokens - tokens)
                return True
            return False

    def take_up_to(self, wanted: int) -> int:
        with self._lock:
            granted, _ = self._state.take(wanted, self._need(wanted), self._now(), self.rate, self.capacity)
            return granted

    def give_back(self, tokens: int) -> None:
        if tokens <= 0:
            return
        with self._lock:
            self._state.give(tokens, self._now(), self.rate, self.capacity)

    def seconds_until(self, tokens: int = 1) -> float:
        with self._lock:
            now = self._now()
            self._state.refill(now, self.rate, self.capacity)
            return self._state.wait_for(self._wanted_wait(tokens), now, self.rate)

    def block_until(self, moment: datetime | None) -> None:
        with self._lock:
            until = _epoch(moment) if moment is not None else None
            self._state.block(until, self._now(), self.rate, self.capacity)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}/s, capacity={self.capacity})"


# --- shared in the store ---------------------------------------------------------------------------


class StoreBucket(_Grants):
    """A bucket in the ``rate_bucket`` table: one short locked transaction per call that changes it."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        rate_per_second: float,
        capacity: float,
        clock: Clock,
        *,
        grain: float = 1,
    ) -> None:
        super().__init__(rate_per_second, capacity, clock, grain)
        self.engine = engine
        self.name = name

    def _read(self, row: Any, now: float) -> _State:
        if row is None:
            return _State(self.capacity, now)
        blocked = _epoch(row.blocked_until) if row.blocked_until is not None else 0.0
        return _State(float(row.tokens), _epoch(row.updated_at), blocked)

    def _change(self, apply: Callable[[_State, float], T]) -> T:
        """Run ``apply(state, now)`` on the locked row and write the state back; a first use inserts it."""
        for attempt in range(2):
            try:
                with write_transaction(self.engine) as conn:
                    found = conn.execute(
                        select(BUCKET_TABLE).where(BUCKET_TABLE.c.name == self.name).with_for_update()
                    ).first()
                    now = _epoch(self._clock.now())
                    state = self._read(found, now)
                    result = apply(state, now)
                    values = {
                        "tokens": state.tokens,
                        "updated_at": _moment(state.updated),
                        "blocked_until": _moment(state.blocked) if state.blocked else None,
                    }
                    if found is None:
                        conn.execute(insert(BUCKET_TABLE).values(name=self.name, **values))
                    else:
                        conn.execute(
                            update(BUCKET_TABLE).where(BUCKET_TABLE.c.name == self.name).values(**values)
                        )
                return result
            except IntegrityError:
                if attempt:  # two first uses raced and the other one inserted it: take it from there
                    raise
        raise AssertionError("unreachable")

    def take_up_to(self, wanted: int) -> int:
        if wanted <= 0:
            return 0
        need = self._need(wanted)
        granted, wait = self._change(
            lambda state, now: state.take(wanted, need, now, self.rate, self.capacity)
        )
        if not granted:
            self._remember_wait(need, wait)
        return granted

    def give_back(self, tokens: int) -> None:
        if tokens > 0:
            self._change(lambda state, now: state.give(tokens, now, self.rate, self.capacity))

    def seconds_until(self, tokens: int = 1) -> float:
        need = self._wanted_wait(tokens)
        memo = self._memo_for(need)
        if memo is not None:
            return memo
        with read_only(self.engine) as conn:
            found = conn.execute(select(BUCKET_TABLE).where(BUCKET_TABLE.c.name == self.name)).first()
        now = _epoch(self._clock.now())
        state = self._read(found, now)
        state.refill(now, self.rate, self.capacity)
        return state.wait_for(need, now, self.rate)

    def block_until(self, moment: datetime | None) -> None:
        until = self._new_block(moment)
        if until is None:
            return
        self._change(
            lambda state, now: state.block(None if until < 0 else until, now, self.rate, self.capacity)
        )

    def __repr__(self) -> str:
        return f"StoreBucket({self.name!r}, rate={self.rate}/s, capacity={self.capacity})"


# --- shared in Redis -------------------------------------------------------------------------------

#: KEYS[1] the bucket's hash; ARGV: now, rate, capacity, op, amount, need, max skew.
#: op "take": grant up to ``amount`` once ``need`` is there → {granted, wait}; "give": add ``amount``;
#: "peek": → {0, wait for ``need``}; "block": empty it, refuse until ``amount`` (< 0: only empty it).
#: Numbers go back as strings: Redis would truncate a Lua number to an integer.
REDIS_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local op = ARGV[4]
local amount = tonumber(ARGV[5])
local need = tonumber(ARGV[6])
local skew = tonumber(ARGV[7])
local saved = redis.call('HMGET', key, 'tokens', 'updated', 'blocked')
local tokens = tonumber(saved[1])
local updated = tonumber(saved[2])
local blocked = tonumber(saved[3]) or 0
if tokens == nil or updated == nil then
  tokens = capacity
  updated = now
end
if now >= blocked then
  if now >= updated then
    tokens = math.min(capacity, tokens + (now - updated) * rate)
    updated = now
  elseif updated - now > skew then
    updated = now
  end
end
local function wait_for(n)
  if now < blocked then
    return blocked - now + n / rate
  end
  return math.max(0, (n - tokens) / rate)
end
local granted = 0
local wait = 0
if op == 'take' then
  if now >= blocked and tokens + 1e-4 >= need then
    granted = math.max(0, math.min(amount, math.floor(tokens + 1e-4)))
    tokens = math.max(0, tokens - granted)
  else
    wait = wait_for(need)
  end
elseif op == 'give' then
  tokens = math.min(capacity, tokens + amount)
elseif op == 'peek' then
  return {'0', tostring(wait_for(need))}
elseif op == 'block' then
  tokens = 0
  if amount > math.max(now, blocked) then
    blocked = amount
    updated = amount
  else
    updated = math.max(updated, now)
  end
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'updated', tostring(updated),
           'blocked', tostring(blocked))
local idle = capacity / rate + math.max(0, blocked - now) + 60
redis.call('PEXPIRE', key, math.ceil(idle * 1000))
return {tostring(granted), tostring(wait)}
"""

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _redis_client(url: str) -> Any:
    """One client (and connection pool) per Redis URL per process."""
    import redis

    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _clients[url] = client
        return client


class RedisBucket(_Grants):
    """A bucket in Redis, each call one atomic script; a Redis error is :class:`RateLimiterUnavailable`."""

    def __init__(
        self, url: str, name: str, rate_per_second: float, capacity: float, clock: Clock, *, grain: float = 1
    ) -> None:
        super().__init__(rate_per_second, capacity, clock, grain)
        self.key = REDIS_PREFIX + name
        self._url = url
        client = _redis_client(url)
        self._script = client.register_script(REDIS_SCRIPT)

    def _run(self, op: str, amount: float = 0, need: float = 1) -> tuple[float, float]:
        import redis

        now = _epoch(self._clock.now())
        args = [repr(now), repr(self.rate), repr(self.capacity), op, repr(float(amount)), repr(need)]
        try:
            granted, wait = self._script(keys=[self.key], args=[*args, repr(MAX_SKEW_SECONDS)])
        except redis.RedisError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise RateLimiterUnavailable(
                f"rate limiter unreachable ({masked_url(self._url)}): {reason}"
            ) from None
        return float(granted), float(wait)

    def take_up_to(self, wanted: int) -> int:
        if wanted <= 0:
            return 0
        need = self._need(wanted)
        granted, wait = self._run("take", wanted, need)
        if not granted:
            self._remember_wait(need, wait)
        return int(granted)

    def give_back(self, tokens: int) -> None:
        if tokens > 0:
            self._run("give", tokens)

    def seconds_until(self, tokens: int = 1) -> float:
        need = self._wanted_wait(tokens)
        memo = self._memo_for(need)
        if memo is not None:
            return memo
        return self._run("peek", 0, need)[1]

    def block_until(self, moment: datetime | None) -> None:
        until = self._new_block(moment)
        if until is not None:
            self._run("block", until)

    def __repr__(self) -> str:
        return f"RedisBucket({self.key!r}, rate={self.rate}/s, capacity={self.capacity})"


# --- which bucket, named after what ---------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


def bucket_name(settings: Settings, channel: str) -> str:
    """``channel:kind:digest``: one bucket per provider account, named without its secrets."""
    if channel == "email":
        kind = settings.email_channel.value
        if kind == "sendgrid" and settings.sendgrid_api_key is not None:
            key = settings.sendgrid_api_key.get_secret_value()
            return f"email:sendgrid:{_digest(str(settings.sendgrid_host), key)}"
        if kind == "smtp" and settings.smtp_url is not None:
            return f"email:smtp:{_digest(settings.smtp_url.get_secret_value())}"
        return f"email:outbox:{_digest(str(settings.outbox_path))}"
    if channel == "x":
        if settings.social_channel.value == "x":
            keys = [
                str(settings.x_api_host),
                *(
                    value.get_secret_value()
                    for value in (settings.x_consumer_key, settings.x_access_token)
                    if value is not None
                ),
            ]
            return f"x:x:{_digest(*keys)}"
        return f"x:outbox:{_digest(str(settings.outbox_path))}"
    raise ValueError(f"no rate limit for channel {channel!r}")


def limiter_kind(settings: Settings, clock: Clock, engine: Engine | None) -> RateLimiterKind:
    """Where this process's buckets live: shared only on the wall clock, with something to share."""
    if not isinstance(clock, SystemClock):
        return RateLimiterKind.process
    kind = RateLimiterKind(settings.rate_limiter)
    if kind is RateLimiterKind.auto:
        kind = RateLimiterKind.redis if settings.redis_url else RateLimiterKind.database
    if kind is RateLimiterKind.database and engine is None:
        return RateLimiterKind.process
    return kind


def make_bucket(
    settings: Settings, clock: Clock, engine: Engine | None, *, channel: str, rate: float, capacity: float
) -> RateBucket:
    kind = limiter_kind(settings, clock, engine)
    if kind is RateLimiterKind.process and not isinstance(clock, SystemClock):
        return TokenBucket(rate, capacity, clock)  # a fake clock's tests count single tokens
    grain = max(1.0, rate * GRANT_SECONDS)
    if kind is RateLimiterKind.process:
        return TokenBucket(rate, capacity, clock, grain=grain)
    name = bucket_name(settings, channel)
    if kind is RateLimiterKind.redis:
        assert settings.redis_url is not None
        return RedisBucket(settings.redis_url, name, rate, capacity, clock, grain=grain)
    assert engine is not None
    return StoreBucket(engine, name, rate, capacity, clock, grain=grain)


def email_bucket(settings: Settings, clock: Clock, engine: Engine | None = None) -> RateBucket:
    """``TIDINGS_EMAIL_RATE_PER_SECOND``, with one second's worth as the burst."""
    rate = settings.email_rate_per_second
    return make_bucket(settings, clock, engine, channel="email", rate=rate, capacity=max(1.0, rate))


def x_bucket(settings: Settings, clock: Clock, engine: Engine | None = None) -> RateBucket:
    """``TIDINGS_X_POSTS_PER_15MIN``: a whole window's posts as the burst, refilled over 15 minutes."""
    per_window = settings.x_posts_per_15min
    return make_bucket(
        settings,
        clock,
        engine,
        channel="x",
        rate=per_window / X_WINDOW_SECONDS,
        capacity=max(1.0, per_window),
    )
