"""What the daemon calls instead of draining the outbox in-process when a broker is configured.

:meth:`Publisher.publish_due` hands every due row to the broker once: it stamps the rows'
``published_at`` (in one short transaction, ``SKIP LOCKED`` on PostgreSQL), commits, then
publishes ``tidings.dispatch_batch`` tasks of up to ``TIDINGS_BATCH_SIZE`` delivery ids each.
Stamping before publishing means a worker that gets the message at once finds the rows
committed and unlocked. A row counts as published *for its current due time*
(``published_at >= scheduled_for``), so a row that comes due again (a retry, a quiet-hours
delay) is published again, and nothing else is.

:meth:`Publisher.sweep` is the safety net, because the broker only distributes work and may
lose it (a purged queue, a broker restart without persistence, a worker killed before it
acknowledged on a transport without redelivery). It re-publishes

* rows still due ``TIDINGS_SWEEP_GRACE_SECONDS`` after they were published (their message was
  lost or is stuck behind a long backlog — a duplicate message is harmless: the claim decides), and
* rows whose lease expired while claimed (their worker died mid-batch): the ordinary claim
  query takes them back, the sweeper only makes sure some worker is asked to run it.

Rows of campaigns that may not send now (paused, draft, or no longer in the workspace) are
neither published nor swept: the dispatcher would not claim them, and re-publishing them every
grace period would only fill the queue.

Posts (broadcasts, a handful per occurrence) are published as ``dispatch_batch(limit=N)``:
"claim up to N due rows", which the dispatcher runs for emails and posts alike.

Example (what ``tidings run`` does on each tick when ``TIDINGS_BROKER_URL`` is set):
    publisher = Publisher(settings, engine, clock, workspace=lambda: daemon.workspace)
    publisher.publish_due()
    publisher.sweep()
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.engine import Engine

from engine.clock import Clock
from engine.fanout.celery_app import DISPATCH_TASK, BrokerUnavailable, create_app, safe_broker_url
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
#: The sweep query runs at most this often (and at least four times per grace period).
SWEEP_EVERY_SECONDS = 30.0


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
        self.batch_size = settings.batch_size
        self.grace = timedelta(seconds=settings.sweep_grace_seconds)
        self.sweep_every = timedelta(seconds=min(SWEEP_EVERY_SECONDS, settings.sweep_grace_seconds / 4))
        self._workspace = workspace
        self._last_sweep: datetime | None = None

    # --- public API -----------------------------------------------------------------------

    def publish_due(self) -> int:
        """Publish every due row not yet published for its due time; returns how many rows."""
        now = self.clock.now()
        return self._publish(now, self._fresh, "published")

    def sweep(self) -> int:
        """Re-publish rows the broker lost or whose worker died; returns how many rows.

        Runs its query at most every ``min(30 s, grace / 4)`` of the clock; calls in between return 0.
        """
        now = self.clock.now()
        if self._last_sweep is not None and now - self._last_sweep < self.sweep_every:
            return 0
        self._last_sweep = now
        return self._publish(now, self._stranded, "re-published")

    def close(self) -> None:
        """Release the broker connections."""
        self.app.close()

    # --- which rows ------------------------------------------------------------------------

    @staticmethod
    def _fresh(table: Table, now: datetime, grace: timedelta) -> ColumnElement[bool]:
        """Due, and not published since it came due."""
        return and_(
            table.c.state.in_(DUE_STATES),
            table.c.scheduled_for <= now,
            or_(table.c.published_at.is_(None), table.c.published_at < table.c.scheduled_for),
        )

    @staticmethod
    def _stranded(table: Table, now: datetime, grace: timedelta) -> ColumnElement[bool]:
        """Published for this due time over ``grace`` ago and still unclaimed, or a lease that ran out."""
        cutoff = now - grace
        return or_(
            and_(
                table.c.state.in_(DUE_STATES),
                table.c.scheduled_for <= now,
                table.c.published_at >= table.c.scheduled_for,
                table.c.published_at <= cutoff,
            ),
            and_(
                table.c.state == DeliveryState.claimed.value,
                table.c.lease_until < now,
                or_(
                    table.c.published_at.is_(None),
                    table.c.published_at < table.c.lease_until,
                    table.c.published_at <= cutoff,
                ),
            ),
        )

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
        condition: Callable[[Table, datetime, timedelta], ColumnElement[bool]],
        verb: str,
    ) -> int:
        total = 0
        allowed, paused = self._campaigns()
        for table in (DELIVERY, POST):
            where = condition(table, now, self.grace)
            if allowed is not None:
                where = and_(where, table.c.campaign_id.in_(allowed))
            elif paused:
                where = and_(where, table.c.campaign_id.not_in(paused))
            while True:
                ids = self._stamp(table, where, now)
                if not ids:
                    break
                self._send(table, ids, now)
                total += len(ids)
                if len(ids) < CHUNK_ROWS:
                    break
        if total:
            log.info("%s %d due row(s) to queue %s", verb, total, self.queue)
        return total

    def _stamp(self, table: Table, where: ColumnElement[bool], now: datetime) -> list[int]:
        """Mark up to :data:`CHUNK_ROWS` matching rows as published now; returns their ids, oldest first."""
        candidates = select(table.c.id).where(where).order_by(table.c.scheduled_for, table.c.id)
        candidates = candidates.limit(CHUNK_ROWS)
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

    def _send(self, table: Table, ids: Sequence[int], now: datetime) -> None:
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
                    self.app.send_task(DISPATCH_TASK, kwargs=kwargs, queue=self.queue, producer=producer)
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
