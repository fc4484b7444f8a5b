"""The Celery app, configured from settings (``TIDINGS_BROKER_URL``, ``TIDINGS_BROKER_QUEUE``).

Choices, and why:

* **JSON only** (``task_serializer``, ``accept_content``): a task carries delivery ids and a
  limit, nothing else; accepting pickle would let anyone who can write to the broker run code
  in every worker.
* **Acks late, prefetch 1**: a worker acknowledges a batch after it ran, and holds one batch
  at a time per pool thread. A worker that dies mid-batch leaves its message unacknowledged,
  so the broker hands it to another worker (on Redis after ``visibility_timeout``); the rows
  it had claimed are claimable again when their lease expires. Redelivery is harmless: the
  claim decides who sends, not the message.
* **No result backend**: outcomes live in the outbox, where ``tidings stats`` reads them.
* **Routes**: the dispatch task goes to ``TIDINGS_BROKER_QUEUE`` (default ``tidings``), so a
  shop can run several engines on one broker, and tests use a queue of their own. What the
  sweeper re-publishes (a dead worker's batches, expired claims, lost messages) goes to
  ``TIDINGS_BROKER_QUEUE.recovery``, which every worker also consumes, taking from the two in
  turn: recovered rows do not wait behind a rate-limited backlog of hours.

Warning:
    Redis's ``visibility_timeout`` must exceed the longest batch: a batch still running when
    it expires is handed to a second worker too. That second run claims nothing (the rows
    are claimed or sent), so it costs a query, not a duplicate message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError as KombuOperationalError

from engine.errors import TidingsError
from engine.settings import Settings, masked_url

if TYPE_CHECKING:
    from engine.fanout.worker_runtime import WorkerRuntime

DISPATCH_TASK = "tidings.dispatch_batch"
RECOVERY_SUFFIX = ".recovery"
#: Lower bound for Redis's visibility timeout; it is also at least a few leases long.
MIN_VISIBILITY_TIMEOUT = 3600
BROKER_CHECK_SECONDS = 5.0


class BrokerNotConfigured(TidingsError):
    """Scale-out was asked for but ``TIDINGS_BROKER_URL`` is unset."""


class BrokerUnavailable(TidingsError):
    """The broker does not answer (down, wrong address, refused credentials)."""


def safe_broker_url(url: str) -> str:
    """The broker URL with any password masked, for messages and logs."""
    return masked_url(url)


def create_app(settings: Settings, *, runtime: WorkerRuntime | None = None) -> Celery:
    """A Celery app for this engine. ``runtime`` is what tasks run with in this process; without
    one it is built from ``settings`` on the first task (a publisher never builds it)."""
    if not settings.broker_url:
        raise BrokerNotConfigured(
            "TIDINGS_BROKER_URL is not set: scale-out workers take batches from a Celery broker "
            "(redis://… or amqp://…); without one, `tidings run` sends in-process"
        )
    app = Celery("tidings", set_as_current=False)
    queue = settings.broker_queue
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_timeout=BROKER_CHECK_SECONDS,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": max(MIN_VISIBILITY_TIMEOUT, int(settings.lease_seconds * 4)),
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        task_queues=[Queue(name, routing_key=name) for name in (queue, recovery_queue(queue))],
        task_routes={DISPATCH_TASK: {"queue": queue}},
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
        timezone="UTC",
    )
    from engine.fanout.tasks import register_tasks

    register_tasks(app, _runtime_provider(settings, runtime), name=DISPATCH_TASK)
    return app


def recovery_queue(queue: str) -> str:
    """Where the sweeper re-publishes what ``queue`` lost; workers consume both."""
    return queue + RECOVERY_SUFFIX


def _runtime_provider(settings: Settings, runtime: WorkerRuntime | None) -> Callable[[], WorkerRuntime]:
    import threading

    holder: list[WorkerRuntime] = [runtime] if runtime is not None else []
    lock = threading.Lock()

    def provide() -> WorkerRuntime:
        with lock:
            if not holder:
                from engine.fanout.worker_runtime import WorkerRuntime

                holder.append(WorkerRuntime.start(settings))
            return holder[0]

    return provide


def check_broker(app: Celery, *, timeout: float = BROKER_CHECK_SECONDS) -> None:
    """Connect to the broker once; :class:`BrokerUnavailable` with a one-line reason if it does not answer."""
    url = safe_broker_url(str(app.conf.broker_url))
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except (KombuOperationalError, OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BrokerUnavailable(f"broker unreachable ({url}): {reason}") from None


__all__ = [
    "DISPATCH_TASK",
    "RECOVERY_SUFFIX",
    "BrokerNotConfigured",
    "BrokerUnavailable",
    "check_broker",
    "create_app",
    "recovery_queue",
    "safe_broker_url",
]
