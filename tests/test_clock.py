"""The fake clock moves only when told, never backwards, and always in UTC."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.clock import Clock, FakeClock, SystemClock

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(START)
    assert clock.now() == START
    assert clock.now() == START


def test_advance_moves_by_a_timedelta_or_seconds() -> None:
    clock = FakeClock(START)
    assert clock.advance(timedelta(days=2)) == START + timedelta(days=2)
    assert clock.advance(90.5) == START + timedelta(days=2, seconds=90.5)
    assert clock.now() == START + timedelta(days=2, seconds=90.5)


def test_set_jumps_forward_and_reports_utc_whatever_zone_it_was_given() -> None:
    clock = FakeClock(START)
    clock.set(datetime(2026, 12, 24, 18, 0, tzinfo=ZoneInfo("Europe/Bucharest")))
    assert clock.now() == datetime(2026, 12, 24, 16, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)


def test_fake_clock_refuses_to_go_back() -> None:
    clock = FakeClock(START)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(START - timedelta(seconds=1))
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == START


def test_fake_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 12, 1, 8, 0))
    clock = FakeClock(START)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 12, 2, 8, 0))


def test_advances_from_many_threads_all_count() -> None:
    clock = FakeClock(START)

    def step() -> None:
        for _ in range(500):
            clock.advance(timedelta(seconds=1))

    threads = [threading.Thread(target=step) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == START + timedelta(seconds=2000)


def test_system_clock_is_aware_and_both_clocks_satisfy_the_protocol() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(START), Clock)
