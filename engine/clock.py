"""Where the engine gets the time.

Every component takes a :class:`Clock` instead of calling ``datetime.now``, so tests
and ``tidings simulate`` can run a whole season in seconds on a fake clock. All
times are timezone-aware (UTC from the clock; callers convert to local zones).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"clock times must be timezone-aware, got naive {moment.isoformat()}")
    return moment


class FakeClock:
    """A clock that moves only when told: ``set`` jumps, ``advance`` steps.

    Thread-safe, because the dispatcher's threads read it while a test or the
    simulator moves it. Refuses to go backwards, because nothing in the engine
    is written to survive time running backwards (neither is the real world).
    """

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        moment = _aware(moment).astimezone(UTC)
        with self._lock:
            if moment < self._now:
                raise ValueError(
                    f"FakeClock cannot go back from {self._now.isoformat()} to {moment.isoformat()}"
                )
            self._now = moment

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("FakeClock.advance takes a non-negative step")
        with self._lock:
            self._now = self._now + step
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"
