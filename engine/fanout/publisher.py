"""What the daemon calls instead of draining the outbox in-process when a broker is configured.

:meth:`Publisher.publish_due` hands every due row to the broker once: it stamps the rows'
``published_at`` (in one short transaction, ``SKIP LOCKED`` on PostgreSQL), commits, then
publishes ``tidings.dispatch_batch`` tasks of up to ``TIDINGS_BATCH_SIZE`` delivery ids each,
keeping at most :data:`MAX_QUEUED_MESSAGES` batches queued: the rest waits for the next tick.
Stamping before publishing means a worker that gets the message at once finds the rows
committed and unlocked. A row counts as published *for its current due time*
(``published_at >= scheduled_for``); a row a worker handed back (a retry, a quiet-hours delay)
has ``published_at`` cleared (:mod:`engine.fanout.receipts`), so what the publisher looks for
on every tick is found through ``ix_delivery_unpublished`` without walking a published backlog.

:meth:`Publisher.sweep` is the safety net, because the broker only distributes work and may
lose it. It re-publishes only rows whose message can really be lost, not rows merely waiting
behind a backlog or for rate-limit tokens (which, at 100/s, would have re-stamped a million
rows every grace period):

* **a dead worker's batch** — rows picked by a batch whose lease (``lease`` row ``task:…``,
  renewed by the worker's heartbeat) expired: handed back and published again at once;
* **an expired claim** — a row whose claim lease ran out (its worker died mid-send): the ordinary
  claim query takes it back, the sweeper makes sure some worker is asked to run it;
* **a lost message** — a row published ``TIDINGS_SWEEP_GRACE_SECONDS`` ago (or for an earlier
  due time) that no worker picked up, *while the broker's queues are empty*: nothing in the
  broker can still carry it (a flushed or restarted Redis). While the queue holds messages, such
  rows wait; a message lost while others remain queued is re-published once the queue drains.

What the sweeper re-publishes goes to the recovery queue (``TIDINGS_BROKER_QUEUE.recovery``),
which workers take from in turn with the main one: a dead worker's rows go out within seconds,
not after the rest of a rate-limited backlog.

Rows of campaigns that may not send now (paused, draft, or no longer in the workspace) are
neither published nor swept: the dispatcher would not claim them.

Posts (broadcasts, a handful per occurrence) are published as ``dispatch_batch(limit=N)``:
"claim up to N due rows", which the dispatcher runs for emails and posts alike.

Example (what ``tidings run`` does on each tick when ``TIDINGS_BROKER_URL`` is set):
    publisher = Publisher(settings, engine, clock, workspace=lambda: daemon.workspace)
    publisher.publish_due()
    publisher.sweep()
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import ColumnElement, Table, and_, delete, or_, select, update
from sqlalchemy.engine import Engine

from engine.clock import Clock
from engine.fanout.celery_app import (
    DISPATCH_TASK,
    BrokerUnavailable,
    create_app,
    recovery_queue,
    safe_broker_url,
)
from engine.fanout.receipts import LEASE, TASK_PREFIX
from engine.runtime.claims import not_awaiting_test
from engine.runtime.controls import controls
from engine.runtime.goodwill import sending_campaigns
from engine.runtime.policy import campaign_rules
from engine.settings import Settings
from engine.store import write_transaction
from engine.store.models import Delivery, DeliveryState, Post

log = logging.getLogger("tidings.fanout")

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]
DUE_STATES = (DeliveryState.pending.value, DeliveryState.retry.value)
#: Rows stamped per transaction; each chunk is committed before its tasks are published.
CHUNK_ROWS = 5000
#: The sweep runs at most this often (and at least twice per grace period).
SWEEP_EVERY_SECONDS = 5.0
#: Batches the publisher keeps queued at most: enough for workers never to wait (a minute of
#: work at 800/s with batches of 500), few enough that a flushed broker loses little and a
#: million-row send is not stamped and queued all at once (which kept the leader's tick, and so
#: the sweeper, busy for minutes).
MAX_QUEUED_MESSAGES = 100

Condition = Callable[[Table, datetime, timedelta], ColumnElement[bool]]


class Publisher:
    """Publishes due outbox rows as batch tasks, and re-publishes what the broker lost.

    ``workspace`` is a function returning the daemon's current workspace (it changes on
    reload); with it, only rows of campaigns that may send now are published. Without it,
    rows of campaigns an operator paused are held back and everything else is published.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Clock,
        *,
        app: Celery | None = None,
        workspace: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.app = app if app is not None else create_app(settings)
        self.queue = settings.broker_queue
        self.recovery = recovery_queue(self.queue)
        self.batch_size = settings.batch_size
        self.grace = timedelta(seconds=settings.sweep_grace_seconds)
        self.sweep_every = timedelta(seconds=min(SWEEP_EVERY_SECONDS, settings.sweep_grace_seconds / 2))
        self._workspace = workspace
        self._last_sweep: datetime | None = None

    # --- public API -----------------------------------------------------------------------

    def publish_due(self) -> int:
        """Publish due rows not yet published for their due time, as long as the broker's queues hold
        fewer than :data:`MAX_QUEUED_MESSAGES` batches; returns how many rows."""
        now = self.clock.now()
        depth = self.queue_depth()
        room = MAX_QUEUED_MESSAGES - depth if depth is not None else CHUNK_ROWS // self.batch_size
        if room <= 0:
            return 0
        return self._publish(now, self._fresh, "published", limit=max(1, room) * self.batch_size)

    def sweep(self) -> int:
        """Re-publish rows whose message can be lost (see the module docstring); returns how many rows.

        Runs at most every ``min(5 s, grace / 2)`` of the clock; calls in between return 0.
        """
        now = self.clock.now()
        if self._last_sweep is not None and now - self._last_sweep < self.sweep_every:
            return 0
        self._last_sweep = now
        total = self._reclaim_dead_batches(now)
        total += self._publish(now, self._expired_claims, "re-published", self.recovery)
        if self.queue_depth() == 0:
            total += self._publish(now, self._lost, "re-published", self.recovery)
        return total

    def queue_depth(self) -> int | None:
        """Messages waiting in the broker's queue and its recovery queue (a queue that does not exist
        holds none); None when the broker does not answer."""
        total = 0
        connection = self.app.connection_for_read()
        unreachable = (KombuOperationalError, OSError, *connection.connection_errors)
        try:
            for name in (self.queue, self.recovery):
                channel = connection.channel()  # one each: AMQP closes a channel that asked for no queue
                try:
                    total += int(channel.queue_declare(queue=name, passive=True).message_count)
                except ChannelError:
                    pass  # no such queue (a flushed broker, or one never used): it holds nothing
                finally:
                    with contextlib.suppress(ChannelError):
                        channel.close()
        except unreachable as exc:
            log.warning("could not ask the broker how much it holds: %s", " ".join(str(exc).split()))
            return None
        finally:
            connection.release()
        return total

    def close(self) -> None:
        """Release the broker connections."""
        self.app.close()

    # --- which rows ------------------------------------------------------------------------

    @staticmethod
    def _fresh(table: Table, now: datetime, grace: timedelta) -> ColumnElement[bool]:
        """Due, and not published since it came due."""
        if table is POST:
            return and_(
                table.c.state.in_(DUE_STATES),
                table.c.scheduled_for <= now,
                or_(table.c.published_at.is_(None), table.c.published_at < table.c.scheduled_for),
            )
        return or_(
            # handed back or never published (ix_delivery_unpublished)
            and_(table.c.published_at.is_(None), table.c.state.in_(DUE_STATES), table.c.scheduled_for <= now),
            # a retry written by a batch that claimed it without a receipt (few: the retry state)
            and_(
                table.c.state == DeliveryState.retry.value,
                table.c.scheduled_for <= now,
                table.c.published_at < table.c.scheduled_for,
            ),
        )

    @staticmethod
    def _expired_claims(table: Table, now: datetime, grace: timedelta) -> ColumnElement[bool]:
        """A claim whose lease ran out (its worker died or hung), not re-published since."""
        return and_(
            table.c.state == DeliveryState.claimed.value,
            table.c.lease_until < now,
            or_(
                table.c.published_at.is_(None),
                table.c.published_at < table.c.lease_until,
                table.c.published_at <= now - grace,
            ),
        )

    @staticmethod
    def _lost(table: Table, now: datetime, grace: timedelta) -> ColumnElement[bool]:
        """Published for this due time over ``grace`` ago (or for an earlier one) and never picked up:
        asked only when the broker's queue is empty, so its message is gone."""
        waiting = [
            table.c.published_at.is_not(None),
            table.c.state.in_(DUE_STATES),
            table.c.scheduled_for <= now,
            or_(table.c.published_at < table.c.scheduled_for, table.c.published_at <= now - grace),
        ]
        if table is DELIVERY:
            waiting.insert(0, table.c.picked_by.is_(None))  # ix_delivery_awaiting_pickup
        return and_(*waiting)

    def _reclaim_dead_batches(self, now: datetime) -> int:
        """Re-publish the rows of batches whose worker stopped renewing their lease; returns how many."""
        expired = select(LEASE.c.name).where(LEASE.c.name.like(f"{TASK_PREFIX}%"), LEASE.c.expires_at < now)
        with self.engine.connect() as conn:
            dead = list(conn.execute(expired).scalars())
        if not dead:
            return 0
        with write_transaction(self.engine) as conn:
            # still expired once locked: a heartbeat that came late keeps its batch
            dead = list(
                conn.execute(
                    delete(LEASE)
                    .where(LEASE.c.name.in_(dead), LEASE.c.expires_at < now)
                    .returning(LEASE.c.name)
                ).scalars()
            )
            ids = (
                sorted(
                    conn.execute(
                        update(DELIVERY)
                        .where(DELIVERY.c.picked_by.in_(dead), DELIVERY.c.state.in_(DUE_STATES))
                        .values(picked_by=None, published_at=now)
                        .returning(DELIVERY.c.id)
                    ).scalars()
                )
                if dead
                else []
            )
        if not dead:
            return 0
        log.warning(
            "%d batch(es) of a worker that stopped (no heartbeat): %d row(s) re-published to %s",
            len(dead),
            len(ids),
            self.recovery,
        )
        if ids:
            self._send(DELIVERY, ids, now, self.recovery)
        return len(ids)

    def _campaigns(self) -> tuple[list[str] | None, list[str]]:
        """(allowed, paused): the campaigns the dispatcher would claim (the same rule as its
        ``_claimable``) when the workspace is known, else None and the campaigns an operator paused."""
        with self.engine.connect() as conn:
            control = controls(conn)
        workspace = self._workspace() if self._workspace is not None else None
        if workspace is None:
            return None, sorted(cid for cid, value in control.items() if value == "paused")
        allowed = sorted(
            cid
            for cid, campaign in sending_campaigns(workspace, self.settings).items()
            if _claimable(campaign_rules(campaign, self.settings, control.get(cid, "active")))
        )
        return allowed, []

    # --- stamping and publishing -----------------------------------------------------------

    def _publish(
        self,
        now: datetime,
        condition: Condition,
        verb: str,
        queue: str | None = None,
        limit: int | None = None,
    ) -> int:
        queue = queue or self.queue
        total = 0
        allowed, paused = self._campaigns()
        for table in (DELIVERY, POST):
            # rows waiting for their A/B test's winner are never handed to a worker
            where = and_(condition(table, now, self.grace), not_awaiting_test(table))
            if allowed is not None:
                where = and_(where, table.c.campaign_id.in_(allowed))
            elif paused:
                where = and_(where, table.c.campaign_id.not_in(paused))
            while limit is None or total < limit:
                chunk = CHUNK_ROWS if limit is None else min(CHUNK_ROWS, limit - total)
                ids = self._stamp(table, where, now, chunk)
                if not ids:
                    break
                self._send(table, ids, now, queue)
                total += len(ids)
                if len(ids) < chunk:
                    break
        if total:
            log.info("%s %d due row(s) to queue %s", verb, total, queue)
        return total

    def _stamp(self, table: Table, where: ColumnElement[bool], now: datetime, count: int) -> list[int]:
        """Mark up to ``count`` matching rows as published now; returns their ids, oldest first."""
        candidates = select(table.c.id).where(where).order_by(table.c.scheduled_for, table.c.id)
        candidates = candidates.limit(count)
        if self.engine.dialect.name != "sqlite":
            candidates = candidates.with_for_update(skip_locked=True)
        statement = (
            update(table)
            .where(table.c.id.in_(candidates.scalar_subquery()))
            .values(published_at=now)
            .returning(table.c.id, table.c.scheduled_for)
        )
        with write_transaction(self.engine) as conn:
            rows = list(conn.execute(statement))
        rows.sort(key=lambda row: (row[1], row[0]))
        return [int(row[0]) for row in rows]

    def _send(self, table: Table, ids: Sequence[int], now: datetime, queue: str) -> None:
        """Publish tasks for stamped rows; on a broker failure, un-stamp what was not published and raise."""
        if table is POST:
            batches = math.ceil(len(ids) / self.batch_size)
            messages: list[tuple[dict[str, Any], Sequence[int]]] = [
                ({"limit": self.batch_size}, ids if i == 0 else ()) for i in range(batches)
            ]
        else:
            messages = [
                ({"ids": list(ids[start : start + self.batch_size])}, ids[start : start + self.batch_size])
                for start in range(0, len(ids), self.batch_size)
            ]
        published = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for kwargs, _ in messages:
                    self.app.send_task(DISPATCH_TASK, kwargs=kwargs, queue=queue, producer=producer)
                    published += 1
        except (KombuOperationalError, OSError) as exc:
            unsent = [row_id for _, chunk in messages[published:] for row_id in chunk]
            if table is POST and published:
                unsent = []  # one "claim up to N" message already covers these posts
            self._unstamp(table, unsent, now)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            url = safe_broker_url(str(self.app.conf.broker_url))
            raise BrokerUnavailable(
                f"broker unreachable ({url}): {reason}; {len(unsent)} row(s) will be published next time"
            ) from None

    def _unstamp(self, table: Table, ids: Collection[int], now: datetime) -> None:
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id.in_(sorted(ids)), table.c.published_at == now)
                .values(published_at=None)
            )


def _claimable(rules: Any) -> bool:
    return bool(rules.control == "cancelled" or not rules.held)


__all__ = ["CHUNK_ROWS", "Publisher"]
