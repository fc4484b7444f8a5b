"""The one task a worker runs: dispatch a batch.

``tidings.dispatch_batch(ids=[…])`` claims those delivery rows (the ones still due; rows
another worker claimed or already sent are skipped by the claim itself) and sends them through
the ordinary :class:`~engine.runtime.dispatcher.Dispatcher`: the same policy gate, renderer,
channels, retries and rate limits as the in-process path. Rate limits are waited out inside
the task, so a batch ends when its rows are done, not when the bucket runs dry. While it
runs, the worker holds a receipt for its rows (:mod:`engine.fanout.receipts`), so the
sweeper leaves them alone unless the worker dies.

``tidings.dispatch_batch(limit=N)`` (no ids) claims up to N due rows of any kind, emails and
posts: what the publisher asks for when broadcast posts are due.

Arguments are plain JSON (a list of ints, an int), as the JSON-only serializer requires.

Example:
    app.send_task(DISPATCH_TASK, kwargs={"ids": [101, 102, 103]})
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery
from sqlalchemy.exc import OperationalError

from engine.runtime.dispatcher import Dispatcher, DispatchStats
from engine.runtime.ratelimit import RateLimiterUnavailable

if TYPE_CHECKING:
    from engine.fanout.worker_runtime import WorkerRuntime

log = logging.getLogger("tidings.worker")

#: A database (or the rate limiter's Redis) that drops out mid-batch: the task is retried with
#: backoff (a new message), and the rows it had claimed come back when their lease expires.
DB_RETRIES = 5


def run_batch(
    dispatcher: Dispatcher, *, ids: Sequence[int] | None = None, limit: int | None = None
) -> DispatchStats:
    """One task's work. With ``ids``: every one of those rows that is due, waiting out rate limits.
    Without: one batch of up to ``limit`` due rows (``TIDINGS_BATCH_SIZE`` when not given)."""
    if ids is not None:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return DispatchStats()
        return dispatcher.drain(ids=wanted)
    return dispatcher.run_once(limit)


def _clean_ids(ids: Any) -> list[int] | None:
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"ids must be a list of integers, got {type(ids).__name__}")
    return ids


def register_tasks(app: Celery, runtime: Callable[[], WorkerRuntime], *, name: str) -> None:
    """Add the dispatch task to ``app`` under ``name`` (the app's ``DISPATCH_TASK``: the app names
    its task, so this module does not import the app's); ``runtime`` gives this process's
    :class:`WorkerRuntime`."""

    @app.task(  # type: ignore[untyped-decorator]
        name=name,
        shared=False,  # each app's task runs with that app's runtime; a shared task would leak across apps
        bind=True,
        acks_late=True,
        ignore_result=True,
        autoretry_for=(OperationalError, RateLimiterUnavailable),
        retry_backoff=True,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=DB_RETRIES,
    )
    def dispatch_batch(self: Any, ids: list[int] | None = None, limit: int | None = None) -> dict[str, Any]:
        wanted = _clean_ids(ids)
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        worker = runtime()
        dispatcher = worker.dispatcher()
        with worker.heartbeat.watching(dispatcher.worker_id):
            if wanted is None:
                stats = run_batch(dispatcher, limit=limit)
            else:
                with worker.receipt(str(self.request.id), wanted):
                    stats = run_batch(dispatcher, ids=wanted)
        if stats.claimed or stats.posts_sent:
            log.info(
                "batch done: %d claimed, %d sent, %d retrying, %d failed, %d skipped",
                stats.claimed,
                stats.sent + stats.posts_sent,
                stats.retried,
                stats.failed,
                stats.skipped,
            )
        return stats.as_dict()


__all__ = ["register_tasks", "run_batch"]
