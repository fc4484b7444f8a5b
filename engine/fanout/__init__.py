"""Scale-out: Celery fans render-and-send batches out to any number of ``tidings worker`` processes.

The outbox in the database stays the source of truth: workers claim rows with the same
lease-based claim query as the in-process dispatcher (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so a broker message only says "there is work here". A message delivered
twice claims nothing the second time; a message lost on the way is found again by the
:class:`~engine.fanout.publisher.Publisher`'s sweeper.

* :mod:`engine.fanout.celery_app` — the Celery app, configured from settings.
* :mod:`engine.fanout.tasks` — the one task: dispatch a batch.
* :mod:`engine.fanout.worker_runtime` — what a worker process holds: engine, workspace, dispatchers.
* :mod:`engine.fanout.publisher` — what the daemon calls instead of draining in-process.
"""

from engine.fanout.celery_app import (
    DISPATCH_TASK,
    BrokerNotConfigured,
    BrokerUnavailable,
    check_broker,
    create_app,
)
from engine.fanout.publisher import Publisher

__all__ = [
    "DISPATCH_TASK",
    "BrokerNotConfigured",
    "BrokerUnavailable",
    "Publisher",
    "check_broker",
    "create_app",
]
