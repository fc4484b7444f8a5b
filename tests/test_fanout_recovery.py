"""Recovery in seconds: heartbeats keep live work alive, the sweeper re-publishes only what can be lost.

On both stores, with kombu's in-memory broker (a real transport, in this process) and the fake
clock: a backlog waiting in the queue is never re-stamped however long it waits; a flushed queue,
a dead worker's batch and an expired claim are re-published within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, delivery_rows
from test_fanout_publisher import make_settings, published_ids, queued

from engine.clock import FakeClock
from engine.fanout import Publisher, create_app
from engine.fanout.celery_app import recovery_queue
from engine.fanout.receipts import LEASE, batch_receipt, sign
from engine.runtime.claims import claim_due
from engine.runtime.heartbeat import LeaseHeartbeat
from engine.settings import Settings
from engine.store.models import Delivery

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
LEASE_SECONDS = 20


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, sweep_grace_seconds=10, lease_seconds=LEASE_SECONDS)


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    app = create_app(settings)
    yield app
    app.close()


def rows_for(engine: Engine, clock: FakeClock, count: int) -> list[int]:
    now = clock.now()
    return [
        add_delivery(engine, add_contact(engine, f"r{i}@example.com", now=now), now=now, step=f"s{i}")
        for i in range(count)
    ]


def leases(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(LEASE)).scalar_one())


# --- heartbeats ----------------------------------------------------------------------------------


def test_a_heartbeat_keeps_its_own_claims_alive_and_no_one_elses(
    store_engine: Engine, clock: FakeClock
) -> None:
    mine, theirs = rows_for(store_engine, clock, 2)
    claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="alive")
    claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="dead")
    heartbeat = LeaseHeartbeat(store_engine, clock, lease_seconds=LEASE_SECONDS)
    heartbeat.watch_claims("alive")
    for _ in range(5):  # more than a lease of beats, every quarter of a lease
        clock.advance(LEASE_SECONDS / 4)
        assert heartbeat.beat() == 1
    retaken = claim_due(store_engine, now=clock.now(), limit=5, lease_seconds=LEASE_SECONDS, worker_id="w2")
    assert retaken == [theirs]  # the dead worker's row is claimable; the live one's is not
    assert delivery_rows(store_engine)[mine].claimed_by == "alive"


def test_without_its_heartbeat_a_claim_is_claimable_one_lease_later(
    store_engine: Engine, clock: FakeClock
) -> None:
    (row,) = rows_for(store_engine, clock, 1)
    claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="stopped")
    clock.advance(LEASE_SECONDS - 1)
    assert (
        claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="w2") == []
    )
    clock.advance(2)
    assert claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="w2") == [
        row
    ]


# --- receipts --------------------------------------------------------------------------------------


def test_a_batch_signs_for_its_rows_and_hands_back_what_it_could_not_send(
    store_engine: Engine, clock: FakeClock
) -> None:
    sent, paused, later = rows_for(store_engine, clock, 3)
    with store_engine.begin() as conn:
        conn.execute(update(DELIVERY).values(published_at=clock.now()))
    heartbeat = LeaseHeartbeat(store_engine, clock, lease_seconds=LEASE_SECONDS)
    with batch_receipt(store_engine, clock, heartbeat, "abc", [sent, paused, later], holder="w") as name:
        assert {r.picked_by for r in delivery_rows(store_engine).values()} == {name}
        assert leases(store_engine) == 1
        with store_engine.begin() as conn:  # what the batch did: one sent, one moved to later
            conn.execute(update(DELIVERY).where(DELIVERY.c.id == sent).values(state="sent"))
            conn.execute(
                update(DELIVERY)
                .where(DELIVERY.c.id == later)
                .values(state="retry", scheduled_for=clock.now() + timedelta(minutes=5))
            )
    rows = delivery_rows(store_engine)
    assert rows[sent].picked_by == "task:abc" and rows[sent].published_at is not None
    for left in (paused, later):  # handed back unpublished: the publisher hands them out when they may go
        assert rows[left].picked_by is None and rows[left].published_at is None
    assert leases(store_engine) == 0


# --- the sweeper ---------------------------------------------------------------------------------


def test_a_backlog_waiting_in_the_queue_is_never_re_stamped(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    rows_for(store_engine, clock, 5)
    publisher = Publisher(settings, store_engine, clock, app=app)
    assert publisher.publish_due() == 5
    stamped = {r.id: r.published_at for r in delivery_rows(store_engine).values()}
    for _ in range(60):  # an hour of sweeps while the messages wait behind a rate limit
        clock.advance(timedelta(minutes=1))
        assert publisher.sweep() == 0
    assert {r.id: r.published_at for r in delivery_rows(store_engine).values()} == stamped
    assert len(published_ids(queued(app, settings.broker_queue))) == 5


def test_a_flushed_queue_is_re_published_within_the_grace_period(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    rows = rows_for(store_engine, clock, 3)
    publisher = Publisher(settings, store_engine, clock, app=app)
    publisher.publish_due()
    queued(app, settings.broker_queue)  # the broker lost everything it held
    assert publisher.queue_depth() == 0
    clock.advance(settings.sweep_grace_seconds - 1)
    assert publisher.sweep() == 0  # published a moment ago: possibly still on its way
    clock.advance(publisher.sweep_every)
    assert publisher.sweep() == 3
    assert published_ids(queued(app, recovery_queue(settings.broker_queue))) == rows


def test_a_dead_workers_batch_is_published_again_as_soon_as_its_lease_runs_out(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    rows = rows_for(store_engine, clock, 4)
    publisher = Publisher(settings, store_engine, clock, app=app)
    publisher.publish_due()
    queued(app, settings.broker_queue)
    # the worker took the message and signed for it, then was SIGKILLed: no heartbeat, no hand-back
    sign(store_engine, clock, "killed", rows, holder="dead-worker", lease_seconds=LEASE_SECONDS)
    clock.advance(LEASE_SECONDS - 1)
    assert publisher.sweep() == 0
    clock.advance(publisher.sweep_every)
    assert publisher.sweep() == 4
    assert published_ids(queued(app, recovery_queue(settings.broker_queue))) == rows
    assert leases(store_engine) == 0
    assert {r.picked_by for r in delivery_rows(store_engine).values()} == {None}


def test_a_live_workers_batch_is_left_alone_while_its_heartbeat_beats(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    rows = rows_for(store_engine, clock, 2)
    publisher = Publisher(settings, store_engine, clock, app=app)
    publisher.publish_due()
    queued(app, settings.broker_queue)
    heartbeat = LeaseHeartbeat(store_engine, clock, lease_seconds=LEASE_SECONDS)
    with batch_receipt(store_engine, clock, heartbeat, "slow", rows, holder="waiting-for-tokens"):
        for _ in range(40):  # ten minutes waiting for rate-limit tokens
            clock.advance(LEASE_SECONDS / 4)
            heartbeat.beat()
            assert publisher.sweep() == 0
    assert queued(app, settings.broker_queue) == queued(app, recovery_queue(settings.broker_queue)) == []


def test_rows_a_batch_handed_back_are_published_again_when_due(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    (row,) = rows_for(store_engine, clock, 1)
    publisher = Publisher(settings, store_engine, clock, app=app)
    publisher.publish_due()
    queued(app, settings.broker_queue)
    heartbeat = LeaseHeartbeat(store_engine, clock, lease_seconds=LEASE_SECONDS)
    with batch_receipt(store_engine, clock, heartbeat, "t1", [row], holder="w"), store_engine.begin() as conn:
        conn.execute(  # a quiet-hours delay
            update(DELIVERY)
            .where(DELIVERY.c.id == row)
            .values(scheduled_for=clock.now() + timedelta(hours=8))
        )
    assert publisher.publish_due() == 0
    clock.advance(timedelta(hours=8))
    assert publisher.publish_due() == 1
    assert published_ids(queued(app, settings.broker_queue)) == [row]


def test_claims_left_by_a_failed_batch_run_out_instead_of_living_as_long_as_the_worker(
    store_engine: Engine, clock: FakeClock
) -> None:
    (row,) = rows_for(store_engine, clock, 1)
    heartbeat = LeaseHeartbeat(store_engine, clock, lease_seconds=LEASE_SECONDS)
    with heartbeat.watching("w1"):
        claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="w1")
        clock.advance(LEASE_SECONDS / 2)
        assert heartbeat.beat() == 1  # in flight: kept alive
    # the batch raised and ended with its row still claimed; the process lives on, beating
    clock.advance(LEASE_SECONDS / 2)
    assert heartbeat.beat() == 0
    clock.advance(LEASE_SECONDS / 2 + 1)
    assert claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=LEASE_SECONDS, worker_id="w2") == [
        row
    ]


def test_a_large_send_is_queued_a_bounded_number_of_batches_at_a_time(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    from engine.fanout.publisher import MAX_QUEUED_MESSAGES

    room = MAX_QUEUED_MESSAGES * settings.batch_size
    rows = rows_for(store_engine, clock, room + 3)
    publisher = Publisher(settings, store_engine, clock, app=app)
    assert publisher.publish_due() == room
    assert publisher.publish_due() == 0  # the queue is full: the rest waits
    first = published_ids(queued(app, settings.broker_queue))  # the workers take it all
    assert publisher.publish_due() == 3
    assert first + published_ids(queued(app, settings.broker_queue)) == rows
