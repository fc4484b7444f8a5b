"""Claiming outbox rows: due rows only, leases, crash recovery, and two workers never share a row."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, add_post, delivery_rows

from engine.clock import FakeClock
from engine.runtime.claims import POST, claim_due


def test_claim_takes_due_rows_only_and_leases_them(store_engine: Engine, clock: FakeClock) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    due = add_delivery(store_engine, contact, now=now, step="due")
    later = add_delivery(store_engine, contact, now=now, step="later", scheduled_for=now + timedelta(hours=1))
    retry = add_delivery(store_engine, contact, now=now, step="retry", state="retry")
    add_delivery(store_engine, contact, now=now, step="sent", state="sent")
    claimed = claim_due(store_engine, now=now, limit=10, lease_seconds=300, worker_id="w1")
    assert claimed == sorted([due, retry])
    rows = delivery_rows(store_engine)
    assert rows[due].state == "claimed" and rows[due].claimed_by == "w1"
    assert rows[due].lease_until == now + timedelta(seconds=300)
    assert rows[later].state == "pending"
    assert claim_due(store_engine, now=now, limit=10, lease_seconds=300, worker_id="w2") == []


def test_claim_respects_the_limit_oldest_first(store_engine: Engine, clock: FakeClock) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    ids = [
        add_delivery(store_engine, contact, now=now, step=f"s{i}", scheduled_for=now - timedelta(minutes=i))
        for i in range(5)
    ]
    assert claim_due(store_engine, now=now, limit=2, lease_seconds=60, worker_id="w") == sorted(ids[-2:])


def test_expired_lease_is_claimed_again_after_a_crash(store_engine: Engine, clock: FakeClock) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    row = add_delivery(store_engine, contact, now=now)
    assert claim_due(store_engine, now=now, limit=1, lease_seconds=60, worker_id="crashed") == [row]
    clock.advance(59)
    assert claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=60, worker_id="w2") == []
    clock.advance(2)
    assert claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=60, worker_id="w2") == [row]
    assert delivery_rows(store_engine)[row].claimed_by == "w2"


def test_rows_of_campaigns_not_allowed_to_send_stay_pending(store_engine: Engine, clock: FakeClock) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    paused = add_delivery(store_engine, contact, now=now, campaign="paused-one")
    active = add_delivery(store_engine, contact, now=now, campaign="active-one")
    assert claim_due(
        store_engine, now=now, limit=9, lease_seconds=60, worker_id="w", campaigns={"active-one"}
    ) == [active]
    assert delivery_rows(store_engine)[paused].state == "pending"


def test_posts_are_claimed_like_deliveries(store_engine: Engine, clock: FakeClock) -> None:
    post = add_post(store_engine, now=clock.now())
    assert claim_due(store_engine, now=clock.now(), limit=5, lease_seconds=60, worker_id="w", table=POST) == [
        post
    ]


def _race(engine: Engine, clock: FakeClock, workers: int, rows: int) -> list[list[int]]:
    now = clock.now()
    contact = add_contact(engine, "a@example.com", now=now)
    for i in range(rows):
        add_delivery(engine, contact, now=now, step=f"s{i}")
    results: list[list[int]] = [[] for _ in range(workers)]
    barrier = threading.Barrier(workers)

    def work(index: int) -> None:
        barrier.wait()
        while True:
            got = claim_due(engine, now=now, limit=7, lease_seconds=300, worker_id=f"w{index}")
            if not got:
                return
            results[index].extend(got)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.postgres
def test_two_workers_on_postgres_never_claim_the_same_row(pg_engine: Engine, clock: FakeClock) -> None:
    first, second = _race(pg_engine, clock, workers=2, rows=300)
    assert not set(first) & set(second)
    assert len(first) + len(second) == 300
    assert first and second  # both really worked: SKIP LOCKED let them run side by side


def test_two_workers_on_sqlite_never_claim_the_same_row(sqlite_engine: Engine, clock: FakeClock) -> None:
    first, second = _race(sqlite_engine, clock, workers=2, rows=200)
    assert not set(first) & set(second)
    assert len(first) + len(second) == 200
