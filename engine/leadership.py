"""Leadership: which ``tidings run`` plans and fires, held as a lease with a fencing epoch.

Several daemons may run on one store for availability; exactly one of them plans and fires.
It holds the ``lease`` row named ``leader``:

* The leader renews it every ``TIDINGS_LEADER_RENEW_SECONDS`` (``expires_at = now + TTL``).
  A standby tries to take it as often, and succeeds once ``expires_at`` has passed, with
  ``epoch + 1``: every term has its own epoch.
* :meth:`Leadership.guard` — before acting — refuses (:class:`LeadershipLost`) unless this
  process leads and its last renewal is recent enough that no standby can have taken over
  yet, counted on the monotonic clock: a leader that was stopped (SIGSTOP, a VM pause) knows
  it the moment it wakes up, before its first statement.
* :meth:`Leadership.fence` — the last statement of a plan's (or a fire record's) write
  transaction — locks the lease row and checks that this term's epoch still holds it.
  A takeover must lock the same row, so a plan commits wholly before the takeover or not at
  all, whatever happened to the old leader's process in between.
* :meth:`Leadership.protect` gives the daemon's PostgreSQL sessions an
  ``idle_in_transaction_session_timeout`` of one TTL: a stopped leader cannot keep a
  transaction (and the locks a new leader's re-fire would wait on) open longer than that.

Why not PostgreSQL's advisory lock, as before (issue 16): the lock belonged to one
connection, not to the process. ``pg_terminate_backend`` on it handed the lock to a standby
within 1.2 s while the old leader kept planning, unaware; a stopped leader kept its session,
and so the lock, forever. A lease is renewed by whichever connection is at hand, expires on
its own, and its epoch fences whoever forgot to notice.

Trade-off: a standby takes over at most TTL plus one renewal interval after the leader's
last renewal (15 + 3 s by default); a shorter TTL fails over faster and costs one UPDATE per
renewal. The leader stops acting a fifth of the TTL before its lease runs out, which is how
much clock skew between hosts it tolerates.

Example::

    leadership = Leadership(engine, clock, settings, on_elected=..., on_lost=...)
    leadership.start()                    # a thread renews, or tries to take over
    epoch = leadership.guard()            # before firing
    with engine.begin() as conn:          # ... the plan's writes ...
        leadership.fence(conn)            # last, then commit
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, event, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from engine.clock import Clock
from engine.errors import TidingsError
from engine.settings import Settings
from engine.store import write_transaction
from engine.store.models import Lease

log = logging.getLogger("tidings.leadership")

LEASE: Table = Lease.__table__  # type: ignore[attr-defined]
LEADER = "leader"
#: The leader stops acting this share of the TTL before its lease could be taken over.
SAFETY_SHARE = 0.2


class LeadershipLost(TidingsError):
    """This daemon does not lead (any more): it must not plan or fire."""


@dataclass(frozen=True, slots=True)
class LeaseView:
    """The leader row as last read: who holds it, in which term, until when."""

    holder: str
    epoch: int
    expires_at: datetime


def process_holder() -> str:
    """``host:pid:random``: unique per process start, readable in ``/healthz`` and the log."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _reason(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Leadership:
    """This process's claim to the ``leader`` lease. Thread-safe.

    ``on_elected(epoch)`` and ``on_lost(reason)`` run on the keeper thread: they should only
    hand the news over (set an event), never do the work of taking or giving up the lead.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        settings: Settings,
        *,
        holder: str | None = None,
        on_elected: Callable[[int], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.ttl = float(settings.leader_ttl_seconds)
        self.renew_every = float(settings.leader_renew_seconds)
        self.holder = holder or process_holder()
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._postgres = engine.dialect.name == "postgresql"
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._deadline = 0.0
        self._since: datetime | None = None
        self._seen: LeaseView | None = None
        self._lost: dict[str, Any] | None = None
        self._trouble: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what callers ask -------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """This term's epoch while leading, else None."""
        with self._lock:
            return self._epoch

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None

    def guard(self) -> int:
        """This term's epoch, or :class:`LeadershipLost` when this process must not act now."""
        with self._lock:
            if self._epoch is None:
                raise LeadershipLost("this daemon is a standby: another one plans and fires")
            late = self._monotonic() - self._deadline
            if late >= 0:
                raise LeadershipLost(
                    f"the leader lease (epoch {self._epoch}) was last renewed over "
                    f"{self.ttl * (1 - SAFETY_SHARE) + late:.1f} s ago; not acting until it is renewed"
                )
            return self._epoch

    def fence(self, conn: Connection) -> None:
        """Inside a write transaction, as its last statement: raise :class:`LeadershipLost` (the
        caller's transaction then rolls back) unless this term still holds the lease, which stays
        locked until the transaction ends, so no takeover can slip in before the commit."""
        epoch = self.guard()
        if self._postgres:
            # a leader stopped between this statement and its commit must not hold the row for ever
            conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {self._ttl_ms()}")
        found = conn.execute(
            select(LEASE.c.holder, LEASE.c.epoch).where(LEASE.c.name == LEADER).with_for_update(read=True)
        ).first()
        if found is None or found.holder != self.holder or found.epoch != epoch:
            now_held = f"epoch {found.epoch} by {found.holder}" if found is not None else "nobody"
            self._lose(f"the lease changed hands ({now_held})", epoch)
            raise LeadershipLost(f"lost leadership (epoch {epoch}): the lease is now held by {now_held}")

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` shows: this daemon's role, the leader it knows, the last loss."""
        with self._lock:
            seen = self._seen
            report: dict[str, Any] = {
                "role": "leader" if self._epoch is not None else "standby",
                "holder": self.holder,
                "epoch": self._epoch,
                "leading_since": self._since.isoformat() if self._since else None,
                "leader": seen.holder if seen else None,
                "leader_epoch": seen.epoch if seen else None,
                "leader_lease_expires_at": seen.expires_at.isoformat() if seen else None,
                "lost_leadership": dict(self._lost) if self._lost else None,
            }
            if self._trouble:
                report["lease_error"] = self._trouble
            return report

    def current(self) -> LeaseView | None:
        """The leader row as the store has it now (None when nobody ever led)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(LEASE).where(LEASE.c.name == LEADER)).first()
        return LeaseView(found.holder, found.epoch, found.expires_at) if found is not None else None

    @staticmethod
    def protect(engine: Engine, ttl_seconds: float) -> None:
        """Give every new PostgreSQL session of ``engine`` an idle-in-transaction timeout of one TTL."""
        if engine.dialect.name != "postgresql":
            return
        milliseconds = max(1000, int(ttl_seconds * 1000))

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET idle_in_transaction_session_timeout = {milliseconds}")
            cursor.close()
            dbapi_connection.commit()

        event.listen(engine, "connect", on_connect)
        engine.dispose()  # sessions opened before (the migration's) get it too, when reopened

    # --- taking, keeping, giving up ----------------------------------------------------------

    def try_acquire(self, *, force: bool = False) -> bool:
        """One attempt to lead: True when this process leads now (a new term, a new epoch).

        ``force`` takes the lease even while it runs: only when nothing else can be leading (a
        SQLite daemon holding the database's file lock).
        """
        if self.is_leader:
            return True
        started = self._monotonic()
        now = self.clock.now()
        expires = now + timedelta(seconds=self.ttl)
        try:
            with write_transaction(self.engine) as conn:
                self._lock_timeout(conn)
                found = conn.execute(select(LEASE).where(LEASE.c.name == LEADER).with_for_update()).first()
                if found is not None and not force and found.expires_at > now and found.holder != self.holder:
                    with self._lock:
                        self._seen = LeaseView(found.holder, found.epoch, found.expires_at)
                        self._trouble = None
                    return False
                epoch = 1 if found is None else int(found.epoch) + 1
                values = {
                    "holder": self.holder,
                    "epoch": epoch,
                    "acquired_at": now,
                    "renewed_at": now,
                    "expires_at": expires,
                }
                if found is None:
                    conn.execute(insert(LEASE).values(name=LEADER, **values))
                else:
                    conn.execute(update(LEASE).where(LEASE.c.name == LEADER).values(**values))
        except IntegrityError:
            return False  # another daemon created the row at the same moment: it leads
        except SQLAlchemyError as exc:
            with self._lock:
                self._trouble = _reason(exc)
            log.warning("could not ask for the leader lease: %s", _reason(exc))
            return False
        previous = found
        with self._lock:
            self._epoch = epoch
            self._deadline = started + self.ttl * (1 - SAFETY_SHARE)
            self._since = now
            self._seen = LeaseView(self.holder, epoch, expires)
            self._trouble = None
        if previous is None:
            log.info("leading (epoch %d): the first leader of this database", epoch)
        elif previous.holder == self.holder:
            log.info("leading again (epoch %d)", epoch)
        else:
            how = "taking over at start" if force else "its lease had expired"
            log.info(
                "leading (epoch %d) after %s (epoch %d): %s", epoch, previous.holder, previous.epoch, how
            )
        if self._on_elected is not None:
            self._on_elected(epoch)
        return True

    def renew(self) -> bool:
        """Extend this term's lease; False (and the lead given up, with one log line) when it was
        taken over, or could not be renewed before it would be."""
        epoch = self.epoch
        if epoch is None:
            return False
        started = self._monotonic()
        now = self.clock.now()
        try:
            with write_transaction(self.engine) as conn:
                self._lock_timeout(conn)
                renewed = conn.execute(
                    update(LEASE)
                    .where(LEASE.c.name == LEADER, LEASE.c.holder == self.holder, LEASE.c.epoch == epoch)
                    .values(renewed_at=now, expires_at=now + timedelta(seconds=self.ttl))
                ).rowcount
        except SQLAlchemyError as exc:
            reason = _reason(exc)
            with self._lock:
                self._trouble = reason
                overdue = self._monotonic() >= self._deadline
            if overdue:
                self._lose(f"could not renew the lease in time ({reason})", epoch)
            else:
                log.warning("could not renew the leader lease (epoch %d), retrying: %s", epoch, reason)
            return False
        if renewed:
            with self._lock:
                if self._epoch == epoch:
                    self._deadline = started + self.ttl * (1 - SAFETY_SHARE)
                    self._seen = LeaseView(self.holder, epoch, now + timedelta(seconds=self.ttl))
                    self._trouble = None
            return True
        try:
            seen = self.current()
        except SQLAlchemyError:
            seen = None
        held = f"epoch {seen.epoch} by {seen.holder}" if seen is not None else "nobody"
        self._lose(f"another daemon took over ({held})", epoch)
        return False

    def release(self) -> None:
        """Give the lead up at once (a clean stop): a standby takes over at its next attempt."""
        epoch = self.epoch
        if epoch is None:
            return
        with self._lock:
            self._epoch = None
        try:
            with write_transaction(self.engine) as conn:
                self._lock_timeout(conn)
                conn.execute(
                    update(LEASE)
                    .where(LEASE.c.name == LEADER, LEASE.c.holder == self.holder, LEASE.c.epoch == epoch)
                    .values(expires_at=self.clock.now())
                )
            log.info("gave up leadership (epoch %d)", epoch)
        except SQLAlchemyError as exc:
            log.warning("could not hand the leader lease over (it expires on its own): %s", _reason(exc))

    def start(self, *, force: bool = False) -> bool:
        """Try to lead once now, then keep trying (or renewing) on a thread; True when leading."""
        self._stop.clear()
        leading = self.try_acquire(force=force)
        self.keep()
        return leading

    def keep(self) -> None:
        """Renew (or keep trying to take) the lease from a thread of its own; again if it died."""
        if self.keeping:
            return
        self._thread = threading.Thread(target=self._keep, name="tidings-lease", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew_every + 30)
            self._thread = None
        if release:
            self.release()

    @property
    def keeping(self) -> bool:
        """Whether the keeper thread runs (``/healthz``: a standby that stopped trying is not healthy)."""
        return self._thread is not None and self._thread.is_alive()

    def _keep(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                if self.is_leader:
                    self.renew()
                else:
                    self.try_acquire()
            except Exception:  # noqa: BLE001 — the keeper must outlive any one attempt
                log.exception("leader lease keeper: unexpected error; trying again")

    def _lose(self, reason: str, epoch: int) -> None:
        with self._lock:
            if self._epoch != epoch:
                return  # already given up (by another thread noticing the same loss)
            self._epoch = None
            self._since = None
            self._lost = {"at": self.clock.now().isoformat(), "epoch": epoch, "reason": reason}
        log.warning(
            "lost leadership (epoch %d): %s; no longer planning or firing, serving as a standby",
            epoch,
            reason,
        )
        if self._on_lost is not None:
            self._on_lost(reason)

    def _lock_timeout(self, conn: Connection) -> None:
        if self._postgres:
            # a lease row locked by a stopped process must not stall the keeper past a renewal
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(100, int(self.renew_every * 1000))}")

    def _ttl_ms(self) -> int:
        return max(1000, int(self.ttl * 1000))


__all__ = ["LEADER", "LeaseView", "Leadership", "LeadershipLost", "process_holder"]
