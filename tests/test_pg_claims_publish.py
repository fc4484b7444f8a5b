"""PostgreSQL: publishers that overlap (a standby daemon taking over) never hand one row to the broker twice.

The claim race itself (workers never claiming the same row) is tested in test_dispatch_claims.py.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from test_fanout_publisher import make_settings, published_ids, queued
from test_fanout_support import add_outbox

from engine.clock import FakeClock
from engine.fanout import Publisher, create_app

pytestmark = pytest.mark.postgres


def test_overlapping_publishers_on_postgres_publish_each_due_row_once(
    pg_engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    rows = add_outbox(pg_engine, 400, now=clock.now())
    settings = make_settings(tmp_path, broker_queue=f"overlap-{uuid.uuid4().hex[:8]}", batch_size=10)
    apps = [create_app(settings) for _ in range(4)]
    publishers = [Publisher(settings, pg_engine, clock, app=app) for app in apps]
    counts = [0] * len(publishers)
    barrier = threading.Barrier(len(publishers))

    def publish(index: int) -> None:
        barrier.wait()
        counts[index] = publishers[index].publish_due()

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(publishers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert sum(counts) == 400
        assert published_ids(queued(apps[0], settings.broker_queue)) == rows  # each once, none missing
    finally:
        for app in apps:
            app.close()
