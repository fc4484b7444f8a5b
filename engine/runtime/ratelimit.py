"""Token buckets that keep each channel under its provider's rate.

A bucket holds at most ``capacity`` tokens and refills at ``rate`` tokens per second,
measured on the injected :class:`~engine.clock.Clock`, so a test on a ``FakeClock``
sees the bucket refill exactly when it moves the clock, and never sleeps.

Warning:
    A bucket allows a burst of ``capacity`` at its edge: an email bucket at 100/s
    with capacity 100 may send 200 messages across one second boundary. Providers
    meter over longer windows, so that trade is cheap; X's 15-minute window is why
    its bucket has a capacity of one window's posts and refills over 15 minutes.

Thread-safe: the dispatcher's threads take tokens concurrently.
"""

from __future__ import annotations

import threading
from datetime import datetime

from engine.clock import Clock
from engine.settings import Settings

X_WINDOW_SECONDS = 15 * 60


class TokenBucket:
    def __init__(self, rate_per_second: float, capacity: float, clock: Clock) -> None:
        if rate_per_second <= 0 or capacity <= 0:
            raise ValueError("a token bucket needs a positive rate and capacity")
        self.rate = float(rate_per_second)
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._updated: datetime = clock.now()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock.now()
        elapsed = (now - self._updated).total_seconds()
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._updated = now

    def available(self) -> int:
        """Whole tokens that could be taken right now."""
        with self._lock:
            self._refill()
            return int(self._tokens)

    def try_take(self, tokens: int = 1) -> bool:
        """Take ``tokens`` if they are all there; never blocks."""
        with self._lock:
            self._refill()
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False

    def take_up_to(self, wanted: int) -> int:
        """Take as many whole tokens as are there, at most ``wanted``; returns how many."""
        with self._lock:
            self._refill()
            granted = max(0, min(int(self._tokens), wanted))
            self._tokens -= granted
            return granted

    def give_back(self, tokens: int) -> None:
        """Return tokens taken for sends that did not happen (skipped or deferred rows)."""
        if tokens <= 0:
            return
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens + tokens)

    def seconds_until(self, tokens: int = 1) -> float:
        """How long until ``tokens`` are available (0 when they are)."""
        with self._lock:
            self._refill()
            missing = tokens - self._tokens
            return 0.0 if missing <= 0 else missing / self.rate

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}/s, capacity={self.capacity})"


def email_bucket(settings: Settings, clock: Clock) -> TokenBucket:
    """``TIDINGS_EMAIL_RATE_PER_SECOND``, with one second's worth as the burst."""
    rate = settings.email_rate_per_second
    return TokenBucket(rate, max(1.0, rate), clock)


def x_bucket(settings: Settings, clock: Clock) -> TokenBucket:
    """``TIDINGS_X_POSTS_PER_15MIN``: a whole window's posts as the burst, refilled over 15 minutes."""
    per_window = settings.x_posts_per_15min
    return TokenBucket(per_window / X_WINDOW_SECONDS, max(1.0, per_window), clock)
