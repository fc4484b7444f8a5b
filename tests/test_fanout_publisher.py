"""The publisher: due rows go to the broker once, lost ones come back through the sweeper.

The broker here is kombu's in-memory transport (a real transport, in this process); the
Redis path is exercised in test_fanout_workers.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import update
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, add_post, delivery_rows
from test_dispatch_support import broadcast, campaign, workspace

from engine.clock import FakeClock
from engine.fanout import DISPATCH_TASK, BrokerUnavailable, Publisher, create_app
from engine.fanout.celery_app import recovery_queue
from engine.runtime.claims import claim_due
from engine.runtime.controls import pause, resume
from engine.settings import Settings
from engine.store.models import Delivery

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
GRACE = 600


def make_settings(tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": tmp_path,
        "broker_url": "memory://",
        "broker_queue": f"test-{uuid.uuid4().hex[:10]}",
        "batch_size": 2,
        "sweep_grace_seconds": GRACE,
        "lease_seconds": 300,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    app = create_app(settings)
    yield app
    app.close()


def queued(app: Celery, queue: str) -> list[dict[str, Any]]:
    """Take every message off ``queue``: the kwargs of each dispatch task, in order."""
    found = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            assert message.headers["task"] == DISPATCH_TASK
            assert message.content_type == "application/json"
            _args, kwargs, _embed = message.decode()
            found.append(kwargs)
    return found


def published_ids(messages: list[dict[str, Any]]) -> list[int]:
    return sorted(i for message in messages for i in message.get("ids", []))


def test_due_rows_are_published_once_in_batches_of_the_batch_size(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    due = [add_delivery(store_engine, contact, now=now, step=f"s{i}") for i in range(5)]
    later = add_delivery(store_engine, contact, now=now, step="later", scheduled_for=now + timedelta(hours=1))
    publisher = Publisher(settings, store_engine, clock, app=app)
    assert publisher.publish_due() == 5
    messages = queued(app, settings.broker_queue)
    assert [len(m["ids"]) for m in messages] == [2, 2, 1]
    assert published_ids(messages) == due
    assert publisher.publish_due() == 0
    assert queued(app, settings.broker_queue) == []
    clock.advance(timedelta(hours=1))
    assert publisher.publish_due() == 1
    assert published_ids(queued(app, settings.broker_queue)) == [later]


def test_a_row_that_comes_due_again_for_a_retry_is_published_again(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    row = add_delivery(store_engine, add_contact(store_engine, "a@example.com", now=now), now=now)
    publisher = Publisher(settings, store_engine, clock, app=app)
    assert publisher.publish_due() == 1
    queued(app, settings.broker_queue)
    retry_at = now + timedelta(minutes=3)
    with store_engine.begin() as conn:
        conn.execute(
            update(DELIVERY).where(DELIVERY.c.id == row).values(state="retry", scheduled_for=retry_at)
        )
    assert publisher.publish_due() == 0  # not due yet
    clock.advance(timedelta(minutes=3))
    assert publisher.publish_due() == 1
    assert published_ids(queued(app, settings.broker_queue)) == [row]


def test_sweeper_republishes_a_row_still_unclaimed_after_the_grace_period(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    row = add_delivery(store_engine, add_contact(store_engine, "a@example.com", now=now), now=now)
    publisher = Publisher(settings, store_engine, clock, app=app)
    publisher.publish_due()
    queued(app, settings.broker_queue)  # the message is lost
    clock.advance(GRACE - 1)
    assert publisher.sweep() == 0
    clock.advance(publisher.sweep_every)  # the sweep query runs at most this often
    assert publisher.sweep() == 1
    assert published_ids(queued(app, recovery_queue(settings.broker_queue))) == [row]
    clock.advance(GRACE - 1)
    assert publisher.sweep() == 0  # just re-published: it gets a whole grace period again


def test_sweeper_asks_a_worker_to_take_back_a_row_whose_worker_died(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    row = add_delivery(store_engine, add_contact(store_engine, "a@example.com", now=now), now=now)
    publisher = Publisher(settings, store_engine, clock, app=app)
    publisher.publish_due()
    queued(app, settings.broker_queue)
    assert claim_due(store_engine, now=now, limit=1, lease_seconds=60, worker_id="died") == [row]
    clock.advance(59)
    assert publisher.sweep() == 0  # the lease still runs
    clock.advance(publisher.sweep_every)
    assert publisher.sweep() == 1
    assert published_ids(queued(app, recovery_queue(settings.broker_queue))) == [row]
    assert claim_due(store_engine, now=clock.now(), limit=1, lease_seconds=60, worker_id="w2") == [row]


def test_rows_of_a_paused_campaign_wait_unpublished_until_it_resumes(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    paused_row = add_delivery(store_engine, contact, now=now, campaign="paused-one")
    active_row = add_delivery(store_engine, contact, now=now, campaign="holiday")
    pause(store_engine, "paused-one", clock)
    publisher = Publisher(settings, store_engine, clock, app=app)
    assert publisher.publish_due() == 1
    assert published_ids(queued(app, settings.broker_queue)) == [active_row]
    resume(store_engine, "paused-one", clock)
    assert publisher.publish_due() == 1
    assert published_ids(queued(app, settings.broker_queue)) == [paused_row]


def test_with_the_workspace_only_rows_of_campaigns_that_may_send_are_published(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    active = add_delivery(store_engine, contact, now=now, campaign="holiday")
    add_delivery(store_engine, contact, now=now, campaign="drafted")
    add_delivery(store_engine, contact, now=now, campaign="removed-from-workspace")
    # customer care's built-in campaign (an agent's apology) is not a workspace file, and goes out
    apology = add_delivery(store_engine, contact, now=now, campaign="care-goodwill", category="transactional")
    current = workspace(campaign("holiday"), campaign("drafted", status="draft"))
    publisher = Publisher(settings, store_engine, clock, app=app, workspace=lambda: current)
    assert publisher.publish_due() == 2
    assert published_ids(queued(app, settings.broker_queue)) == [active, apology]
    clock.advance(GRACE + 1)
    assert publisher.sweep() == 2  # the lost messages of the rows that may send; never the held ones
    assert published_ids(queued(app, recovery_queue(settings.broker_queue))) == [active, apology]


def test_due_posts_are_published_as_claim_up_to_n_batches(
    store_engine: Engine, clock: FakeClock, settings: Settings, app: Celery
) -> None:
    add_post(store_engine, now=clock.now(), occurrence="2026-12-01")
    add_post(store_engine, now=clock.now(), occurrence="2026-12-02")
    add_post(store_engine, now=clock.now(), occurrence="2026-12-03")
    publisher = Publisher(settings, store_engine, clock, app=app, workspace=lambda: workspace(broadcast()))
    assert publisher.publish_due() == 3
    assert queued(app, settings.broker_queue) == [{"limit": 2}, {"limit": 2}]
    assert publisher.publish_due() == 0


def test_rows_stay_unpublished_when_the_broker_is_down_and_go_out_next_time(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, settings: Settings, app: Celery
) -> None:
    now = clock.now()
    row = add_delivery(store_engine, add_contact(store_engine, "a@example.com", now=now), now=now)
    down = make_settings(tmp_path, broker_url="redis://127.0.0.1:9/0")
    broken = Publisher(down, store_engine, clock)
    try:
        with pytest.raises(BrokerUnavailable, match=r"broker unreachable \(redis://127.0.0.1:9/0\)"):
            broken.publish_due()
    finally:
        broken.close()
    assert delivery_rows(store_engine)[row].published_at is None
    assert Publisher(settings, store_engine, clock, app=app).publish_due() == 1
    assert published_ids(queued(app, settings.broker_queue)) == [row]


def test_broker_password_never_appears_in_the_error(
    store_engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    now = clock.now()
    add_delivery(store_engine, add_contact(store_engine, "a@example.com", now=now), now=now)
    down = make_settings(tmp_path, broker_url="redis://user:hunter2-secret@127.0.0.1:9/0")
    publisher = Publisher(down, store_engine, clock)
    try:
        with pytest.raises(BrokerUnavailable) as caught:
            publisher.publish_due()
    finally:
        publisher.close()
    assert "hunter2" not in str(caught.value)
    assert "user:***@127.0.0.1:9" in str(caught.value)
