"""Heartbeats: a live process keeps its claims from expiring; a dead or hung one loses them in seconds.

A claim's lease is short (``TIDINGS_LEASE_SECONDS``, 30 s by default) so that the rows of a
worker that was killed, or stopped, are claimable again soon after. A live process must then
keep the leases of what it is still sending: :class:`LeaseHeartbeat` extends, every quarter of
a lease, ``lease_until`` of every row claimed by the dispatchers it watches (by their worker
ids), and ``expires_at`` of the named leases it holds (a worker's batch in progress, see
:mod:`engine.fanout.receipts`). One short transaction per beat whatever the number of rows:
an ``UPDATE … WHERE state = 'claimed' AND claimed_by IN (…)`` per outbox table, which the
``(state, scheduled_for)`` index keeps to the few rows in flight. On PostgreSQL it skips rows
another transaction holds (``SKIP LOCKED``): a beat racing the batch's own outcome writes,
row by row in another order, deadlocked and failed the batch, leaving its rows claimed.

Watch a dispatcher only while it runs a batch (:meth:`LeaseHeartbeat.watching`): rows a batch
left claimed when it failed must run out, not be kept alive for as long as the process lives.

Before, a killed worker's rows waited out a 300 s lease; a worker whose sends were slow (a
provider timing out at 10 s, 500 rows at 16 in flight: 312 s) could see its own lease run out
mid-batch and a second worker send the same rows. With a heartbeat, neither happens: the lease
only has to outlast the gap between two beats.

A beat that fails (the database is away) is logged and tried again at the next; after a whole
lease without one, the rows are someone else's to claim, which is what a lease is for.

Example::

    heartbeat = LeaseHeartbeat(engine, clock, lease_seconds=settings.lease_seconds)
    heartbeat.start()
    with heartbeat.watching(dispatcher.worker_id):
        dispatcher.run_once()
    heartbeat.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Table, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock
from engine.runtime.claims import DELIVERY, POST
from engine.store import write_transaction
from engine.store.models import DeliveryState, Lease

log = logging.getLogger("tidings.heartbeat")

LEASE: Table = Lease.__table__  # type: ignore[attr-defined]
#: Beats per lease: the lease survives this many minus one missed beats.
BEATS_PER_LEASE = 4


class LeaseHeartbeat:
    """Extends the leases this process holds, from a thread of its own. Thread-safe."""

    def __init__(
        self, engine: Engine, clock: Clock, *, lease_seconds: float, every: float | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self.every = float(every) if every is not None else self.lease_seconds / BEATS_PER_LEASE
        self._lock = threading.Lock()
        self._claimers: set[str] = set()
        self._held: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.failures = 0

    def watch_claims(self, worker_id: str) -> None:
        """Keep alive every row ``worker_id`` (a dispatcher of this process) has claimed."""
        with self._lock:
            self._claimers.add(worker_id)

    def forget_claims(self, worker_id: str) -> None:
        with self._lock:
            self._claimers.discard(worker_id)

    @contextmanager
    def watching(self, worker_id: str) -> Iterator[None]:
        """Keep ``worker_id``'s claims alive while the block (a batch) runs, and only then."""
        self.watch_claims(worker_id)
        try:
            yield
        finally:
            self.forget_claims(worker_id)

    def hold(self, name: str) -> None:
        """Keep the named lease (a row of ``lease`` this process created) alive."""
        with self._lock:
            self._held.add(name)

    def drop(self, name: str) -> None:
        with self._lock:
            self._held.discard(name)

    def beat(self) -> int:
        """Extend everything held now; returns how many rows and leases were extended."""
        with self._lock:
            claimers, held = sorted(self._claimers), sorted(self._held)
        if not claimers and not held:
            return 0
        now = self.clock.now()
        until = now + timedelta(seconds=self.lease_seconds)
        extended = 0
        with write_transaction(self.engine) as conn:
            if claimers:
                for table in (DELIVERY, POST):
                    mine = select(table.c.id).where(
                        table.c.state == DeliveryState.claimed.value, table.c.claimed_by.in_(claimers)
                    )
                    if self.engine.dialect.name != "sqlite":
                        # rows a flush is writing right now are skipped, not waited for: a beat must
                        # never deadlock with the outcome writes of the very batch it keeps alive
                        mine = mine.with_for_update(skip_locked=True)
                    extended += (
                        conn.execute(
                            update(table)
                            .where(table.c.id.in_(mine.scalar_subquery()))
                            .values(lease_until=until)
                        ).rowcount
                        or 0
                    )
            if held:
                extended += (
                    conn.execute(
                        update(LEASE).where(LEASE.c.name.in_(held)).values(renewed_at=now, expires_at=until)
                    ).rowcount
                    or 0
                )
        self.beats += 1
        return extended

    def start(self) -> None:
        """Beat from a thread of its own (again, if the previous one died)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tidings-heartbeat", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except SQLAlchemyError as exc:
                self.failures += 1
                origin = getattr(exc, "orig", None) or exc
                log.warning(
                    "heartbeat failed (leases run out in %.0f s without one): %s", self.lease_seconds, origin
                )
            except Exception:  # noqa: BLE001 — the heartbeat must outlive one bad beat
                self.failures += 1
                log.exception("heartbeat failed")


@contextmanager
def claims_kept_alive(
    engine: Engine, clock: Clock, *, lease_seconds: float, worker_id: str
) -> Iterator[None]:
    """A heartbeat of its own for one command's sends (``trigger --wait``, a goodwill coupon): the
    rows ``worker_id`` claims stay its own however slow the provider, and run out within a lease
    once the command is killed."""
    heartbeat = LeaseHeartbeat(engine, clock, lease_seconds=lease_seconds)
    heartbeat.start()
    try:
        with heartbeat.watching(worker_id):
            yield
    finally:
        heartbeat.stop()


__all__ = ["BEATS_PER_LEASE", "LeaseHeartbeat", "claims_kept_alive"]
