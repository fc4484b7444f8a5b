"""A worker's receipt for a batch: which broker message took which rows, for as long as it runs.

The broker only says "there is work here", and may lose what it holds (a flushed or restarted
Redis). The sweeper must tell a row whose message was lost from one whose message is merely
waiting — behind a long backlog, or in a worker waiting for rate-limit tokens — or it re-stamps
the whole rate-limited backlog every grace period (a 1M send at 100/s: ~8M row updates).

So a worker that starts a batch of ids signs for it, in one transaction:

* a ``lease`` row ``task:<celery task id>`` held by this process, kept alive by the process's
  :class:`~engine.runtime.heartbeat.LeaseHeartbeat` while the batch runs;
* ``delivery.picked_by = 'task:<id>'`` on the batch's rows that are still due.

When the batch ends, its rows still due (a campaign paused meanwhile, a quiet-hours delay, a
retry for later) are handed back unpublished (``picked_by`` and ``published_at`` cleared), so
the publisher hands them out again when they may go, and the lease row is deleted — in one
transaction. The sweeper then knows: a row picked by a lease that expired belongs to a worker
that died (re-publish it now); a row published, not picked, while the broker's queue is empty,
lost its message (re-publish it); anything else is on its way.

Cost: three statements per batch (sign, hand back, the heartbeat's share), against the
re-publishing of every row still waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Table, delete, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock
from engine.runtime.claims import DELIVERY, DUE_STATES
from engine.runtime.heartbeat import LeaseHeartbeat
from engine.store import write_transaction
from engine.store.models import Lease

log = logging.getLogger("tidings.worker")

LEASE: Table = Lease.__table__  # type: ignore[attr-defined]
TASK_PREFIX = "task:"


def lease_name(task_id: str) -> str:
    return TASK_PREFIX + task_id


def sign(
    engine: Engine, clock: Clock, task_id: str, ids: Sequence[int], *, holder: str, lease_seconds: float
) -> str:
    """Take a batch's rows: its lease row, and ``picked_by`` on the rows still due; returns the lease."""
    name = lease_name(task_id)
    now = clock.now()
    expires = now + timedelta(seconds=lease_seconds)
    with write_transaction(engine) as conn:
        # a redelivered message (its first worker died) signs again under the same task id
        conn.execute(delete(LEASE).where(LEASE.c.name == name))
        conn.execute(
            insert(LEASE).values(
                name=name, holder=holder, epoch=1, acquired_at=now, renewed_at=now, expires_at=expires
            )
        )
        conn.execute(
            update(DELIVERY)
            .where(DELIVERY.c.id.in_(sorted(ids)), DELIVERY.c.state.in_(DUE_STATES))
            .values(picked_by=name)
        )
    return name


@contextmanager
def batch_receipt(
    engine: Engine,
    clock: Clock,
    heartbeat: LeaseHeartbeat,
    task_id: str,
    ids: Sequence[int],
    *,
    holder: str,
) -> Iterator[str]:
    """Sign for ``ids`` while the block runs, the heartbeat keeping the receipt alive; yields its name."""
    name = sign(engine, clock, task_id, ids, holder=holder, lease_seconds=heartbeat.lease_seconds)
    heartbeat.hold(name)
    try:
        yield name
    finally:
        heartbeat.drop(name)
        hand_back(engine, name)


def hand_back(engine: Engine, name: str) -> None:
    """End a receipt: rows still due go back unpublished, the lease row goes. A failure here is
    logged: the lease then expires and the sweeper re-publishes what it held."""
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                update(DELIVERY)
                .where(DELIVERY.c.picked_by == name, DELIVERY.c.state.in_(DUE_STATES))
                .values(picked_by=None, published_at=None)
            )
            conn.execute(delete(LEASE).where(LEASE.c.name == name))
    except SQLAlchemyError as exc:
        origin = getattr(exc, "orig", None) or exc
        log.warning("could not close the receipt of %s (the sweeper re-publishes its rows): %s", name, origin)


__all__ = ["TASK_PREFIX", "batch_receipt", "hand_back", "lease_name", "sign"]
