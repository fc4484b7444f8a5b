"""The dispatcher: claim → gate → render → send → record, one batch at a time.

One batch:

1. **Claim** up to ``limit`` due rows (``engine.runtime.claims``), no more than the
   channel's token bucket allows right now, and only of campaigns that may send
   (active, not paused, not draft; cancelled ones are claimed so the gate skips them).
2. **Gate** every row (``engine.runtime.policy``) with the facts of the whole batch loaded
   in a few bulk queries. Refused rows are skipped with a named reason; quiet hours move a
   row to the end of the quiet window; a pause that landed after the claim gives rows back.
3. **Render** each message for its own recipient and **send** it, with at most
   ``TIDINGS_CONCURRENCY`` in flight (a thread pool). A render failure fails the row with
   reason ``render_error`` and is never sent half-made.
4. **Record** outcomes in batches (one ``executemany`` per chunk), as sends complete, from a
   thread of its own (:class:`_Recorder`) so rendering never waits for a write, and so a
   row's ``sent`` state is written long before its lease can run out: ``sent`` with the
   provider's id, ``retry`` with the next attempt time, ``failed`` with the last error.

What a crash costs: rows claimed but not recorded are claimed again when their lease
expires. Only messages that were in flight at the crash (at most the concurrency, plus
the completed-but-unflushed ones of the current chunk) can go out twice.

Posts (the ``post`` table, broadcasts) go through the same steps on the social channel.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Engine

from engine import metrics
from engine.channels.base import (
    CAMPAIGN_HEADER,
    DELIVERY_HEADER,
    EmailChannel,
    PermanentFailure,
    RateLimited,
    SocialChannel,
    TransientFailure,
)
from engine.clock import Clock, SystemClock
from engine.message import EmailMessage, SendResult, SocialPost
from engine.render.errors import RenderError
from engine.runtime import claims
from engine.runtime.controls import controls
from engine.runtime.policy import (
    TRANSACTIONAL,
    CampaignRules,
    Decision,
    campaign_rules,
    campaigns_of,
    load_recipient_facts,
    note_sent,
    outside_window,
)
from engine.runtime.policy import decide as gate
from engine.runtime.ratelimit import RateBucket, email_bucket, x_bucket
from engine.runtime.retry import RetryPolicy, decide_retry
from engine.settings import Settings
from engine.store.models import Contact, DeliveryState, GiftCard, ShopEvent, ShopOrder

log = logging.getLogger(__name__)

DELIVERY = claims.DELIVERY
POST = claims.POST
#: Outcomes are written at least this often (and at least every ``concurrency`` sends): what a
#: crash can send twice is what was in flight plus what completed since the last write.
FLUSH_SECONDS = 0.25
MIN_FLUSH = 16
#: At most this many outcomes in one write (sends that completed while the previous write ran).
MAX_FLUSH = 1_000


class Renderer(Protocol):
    """What the dispatcher needs from ``engine.render.Renderer``."""

    def render_email(
        self,
        template: str,
        context: dict[str, Any],
        *,
        locale: str | None,
        campaign_id: str,
        step_id: str,
        delivery_id: int | str | None,
        marketing: bool,
        to_email: str,
        to_name: str | None,
    ) -> EmailMessage: ...

    def render_post(
        self,
        template: str,
        context: dict[str, Any],
        *,
        locale: str | None = None,
        campaign_id: str | None = None,
    ) -> SocialPost: ...


@dataclass(slots=True)
class DispatchStats:
    """What one batch (or a whole drain) did; ``wait_seconds`` is how long until the rate limit frees up."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    held: int = 0
    posts_sent: int = 0
    wait_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: DispatchStats) -> None:
        for item in fields(self):
            if item.name == "reasons":
                for reason, count in other.reasons.items():
                    self.reasons[reason] = self.reasons.get(reason, 0) + count
            elif item.name == "wait_seconds":
                self.wait_seconds = other.wait_seconds
            else:
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def count_reason(self, reason: str | None) -> None:
        if reason:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass(slots=True)
class _Outcome:
    """The new state of one claimed row, written by :meth:`Dispatcher._flush`."""

    row_id: int
    state: str
    scheduled_for: datetime
    reason: str | None = None
    last_error: str | None = None
    attempted: bool = False
    provider_id: str | None = None
    sent_at: datetime | None = None
    text: str | None = None


@dataclass(slots=True)
class _Attempt:
    """One channel call, never raising: its result or error, and how long it took (for metrics)."""

    result: SendResult | None
    error: BaseException | None
    seconds: float


def _timed(call: Callable[[Any], SendResult], message: Any) -> _Attempt:
    started = time.perf_counter()
    try:
        return _Attempt(call(message), None, time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 — classified by the dispatcher, in its own thread
        return _Attempt(None, exc, time.perf_counter() - started)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Sends what is due. Thread-safe to call ``run_once`` from one thread at a time; several
    dispatchers (threads, processes, hosts) may share one store: claims keep them apart."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        renderer: Renderer,
        email_channel: EmailChannel | None,
        social_channel: SocialChannel | None,
        workspace: Any,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.renderer = renderer
        self.email_channel = email_channel
        self.social_channel = social_channel
        self.workspace = workspace
        self.worker_id = worker_id or default_worker_id()
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.email_bucket: RateBucket = email_bucket(settings, clock, engine)
        self.x_bucket: RateBucket = x_bucket(settings, clock, engine)
        self._rng = rng or random.Random()
        # Only a wall clock may be slept on; a fake or simulated clock moves when its owner says.
        self._sleep = sleep if sleep is not None else (time.sleep if isinstance(clock, SystemClock) else None)
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="tidings-send")
        self._closed = False
        self._lock = threading.Lock()

    # --- public API -------------------------------------------------------------------------

    def run_once(
        self,
        limit: int | None = None,
        *,
        ids: Sequence[int] | None = None,
        campaign: str | None = None,
        occurrence: str | None = None,
    ) -> DispatchStats:
        """One batch of emails and one of posts.

        ``campaign`` and ``occurrence`` restrict the batch to one fire (``trigger --wait``);
        ``ids`` to given delivery rows (posts are then left alone).
        """
        with self._lock:
            limit = limit or self.settings.batch_size
            rules = self._rules()
            allowed = self._claimable(rules)
            if campaign is not None:
                allowed &= {campaign}
            stats = self._email_batch(limit, rules, allowed, ids, occurrence)
            if ids is None:
                posts = self._post_batch(limit, rules, allowed, occurrence)
                waits = [w for w in (stats.wait_seconds, posts.wait_seconds) if w > 0]
                stats.add(posts)
                stats.wait_seconds = min(waits, default=0.0)
            return stats

    def drain(
        self,
        until_idle: bool = True,
        *,
        ids: Sequence[int] | None = None,
        campaign: str | None = None,
        occurrence: str | None = None,
        max_batches: int | None = None,
    ) -> DispatchStats:
        """Batches until nothing is due (or one batch with ``until_idle=False``).

        On a wall clock a rate-limited drain sleeps until tokens are back; on any other
        clock it stops and reports ``wait_seconds``, and the caller moves the clock.
        """
        total = DispatchStats()
        batches = 0
        while True:
            stats = self.run_once(ids=ids, campaign=campaign, occurrence=occurrence)
            total.add(stats)
            batches += 1
            if not until_idle or (max_batches is not None and batches >= max_batches):
                return total
            worked = stats.claimed
            if stats.wait_seconds > 0 and self._sleep is not None:
                self._sleep(min(stats.wait_seconds, 1.0))
                continue
            if not worked:
                return total

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- campaigns --------------------------------------------------------------------------

    def _rules(self) -> dict[str, CampaignRules]:
        with self.engine.connect() as conn:
            control = controls(conn)
        return {
            cid: campaign_rules(campaign, self.settings, control.get(cid, "active"))
            for cid, campaign in campaigns_of(self.workspace).items()
        }

    @staticmethod
    def _claimable(rules: Mapping[str, CampaignRules]) -> set[str]:
        return {cid for cid, rule in rules.items() if rule.control == "cancelled" or not rule.held}

    def _claim(
        self,
        bucket: RateBucket,
        limit: int,
        stats: DispatchStats,
        *,
        now: datetime,
        table: Any,
        allowed: set[str],
        ids: Sequence[int] | None,
        occurrence: str | None,
    ) -> tuple[list[int], int]:
        """Claim at most as many due rows as the channel's rate limit allows right now.

        Returns the claimed ids and the tokens taken; tokens for rows that were not there go
        back at once. With no token left, ``stats.wait_seconds`` says when the next one comes.
        """
        tokens = bucket.take_up_to(limit)
        if tokens == 0:
            stats.wait_seconds = max(stats.wait_seconds, bucket.seconds_until(1))
            return [], 0
        claimed = claims.claim_due(
            self.engine,
            now=now,
            limit=tokens,
            lease_seconds=self.settings.lease_seconds,
            worker_id=self.worker_id,
            campaigns=allowed,
            table=table,
            ids=ids,
            occurrence=occurrence,
        )
        if not claimed:
            bucket.give_back(tokens)
        return claimed, tokens

    # --- email --------------------------------------------------------------------------------

    def _email_batch(
        self,
        limit: int,
        rules: dict[str, CampaignRules],
        allowed: set[str],
        ids: Sequence[int] | None,
        occurrence: str | None,
    ) -> DispatchStats:
        stats = DispatchStats()
        if self.email_channel is None:
            return stats
        now = self.clock.now()
        claimed, tokens = self._claim(
            self.email_bucket,
            limit,
            stats,
            now=now,
            table=DELIVERY,
            allowed=allowed,
            ids=ids,
            occurrence=occurrence,
        )
        stats.claimed = len(claimed)
        if not claimed:
            return stats
        unused = tokens - len(claimed)
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(select(DELIVERY).where(DELIVERY.c.id.in_(claimed)).order_by(DELIVERY.c.id))
            )
            lookback = max(
                (r.frequency_cap.per for r in rules.values() if r.frequency_cap is not None), default=None
            )
            facts = load_recipient_facts(
                conn, [r.contact_id for r in rows if r.contact_id is not None], now=now, cap_lookback=lookback
            )
        outcomes: list[_Outcome] = []
        released: list[tuple[int, datetime, str | None]] = []
        to_send: list[Any] = []
        for row in rows:
            rule = rules[row.campaign_id]
            if row.category and row.category != rule.category:
                # The row's category was fixed when it was planned; a later edit of the YAML does not
                # turn a planned receipt into marketing (or the reverse).
                rule = replace(rule, category=row.category)
            contact_facts = facts.get(row.contact_id) if row.contact_id is not None else None
            decision = gate(rule, contact_facts, channel=row.channel, now=now)
            if decision.sends:
                assert contact_facts is not None
                note_sent(contact_facts, rule, now)
                to_send.append(row)
                continue
            unused += 1
            self._apply_refusal(row, decision, outcomes, released, stats)
        if released:
            with self.engine.begin() as conn:
                claims.release(conn, DELIVERY, released, worker_id=self.worker_id)
        self._flush(DELIVERY, outcomes)
        outcomes = []
        if to_send:
            unused += self._send_emails(to_send, rules, now, stats)
        self.email_bucket.give_back(unused)
        return stats

    def _apply_refusal(
        self,
        row: Any,
        decision: Decision,
        outcomes: list[_Outcome],
        released: list[tuple[int, datetime, str | None]],
        stats: DispatchStats,
    ) -> None:
        if decision.action == "skip":
            metrics.record_send(row.campaign_id, row.channel, DeliveryState.skipped.value)
            outcomes.append(
                _Outcome(row.id, DeliveryState.skipped.value, row.scheduled_for, reason=decision.reason)
            )
            stats.skipped += 1
            stats.count_reason(decision.reason)
        elif decision.action == "defer":
            assert decision.until is not None
            released.append((row.id, decision.until, decision.reason))
            stats.deferred += 1
            stats.count_reason(decision.reason)
        else:
            released.append((row.id, row.scheduled_for, row.reason))
            stats.held += 1

    def _send_emails(
        self, rows: list[Any], rules: dict[str, CampaignRules], now: datetime, stats: DispatchStats
    ) -> int:
        """Render and send ``rows`` concurrently, recording outcomes as they complete.

        This thread renders and hands each message to the pool; a :class:`_Recorder` thread
        waits for the sends in order and writes their outcomes meanwhile, so rendering never
        stops for a database write. Returns how many rows were not sent (their rate-limit
        tokens go back)."""
        data = _BatchData.load(self.engine, rows)
        campaigns = campaigns_of(self.workspace)
        unsent = 0
        recorder = _Recorder(self, DELIVERY)
        try:
            for row in rows:
                campaign = campaigns[row.campaign_id]
                started = time.perf_counter()
                try:
                    message = self._render_email(row, campaign, rules[row.campaign_id], data, now)
                    metrics.record_render(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 — any render failure fails this row, never the batch
                    recorder.put(
                        _Outcome(
                            row.id,
                            DeliveryState.failed.value,
                            row.scheduled_for,
                            reason="render_error",
                            last_error=render_error_text(exc),
                        )
                    )
                    stats.failed += 1
                    stats.count_reason("render_error")
                    unsent += 1
                    continue
                assert self.email_channel is not None
                recorder.put((row, self._pool.submit(_timed, self.email_channel.send, message)))
        finally:
            recorder.finish(stats)
        return unsent

    def _render_email(
        self, row: Any, campaign: Any, rule: CampaignRules, data: _BatchData, now: datetime
    ) -> EmailMessage:
        contact = data.contacts[row.contact_id]
        schedules = getattr(self.workspace, "schedules", None)
        context = data.context_for(row, contact, campaign, self.settings, now, schedules)
        marketing = row.category != TRANSACTIONAL
        message = self.renderer.render_email(
            row.template,
            context,
            locale=row.locale or contact.locale,
            campaign_id=row.campaign_id,
            step_id=row.step_id,
            delivery_id=row.id,
            marketing=marketing,
            to_email=contact.email,
            to_name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
        )
        return _stamped(message, row.campaign_id, row.id)

    # --- outcomes ------------------------------------------------------------------------------

    def _collect(
        self, table: Table, futures: list[tuple[Any, Future[_Attempt]]], stats: DispatchStats
    ) -> None:
        """Wait for sends in submission order and write their outcomes (see :class:`_Recorder`)."""
        recorder = _Recorder(self, table)
        try:
            for item in futures:
                recorder.put(item)
        finally:
            recorder.finish(stats)

    def _outcome(self, row: Any, future: Future[_Attempt], stats: DispatchStats) -> _Outcome:
        attempt = future.result()
        outcome = self._classify(row, attempt, stats)
        metrics.record_send(row.campaign_id, row.channel, outcome.state, attempt.seconds)
        if outcome.state == DeliveryState.retry.value:
            metrics.record_retry(row.channel)
        return outcome

    def _classify(self, row: Any, attempt: _Attempt, stats: DispatchStats) -> _Outcome:
        """What one attempt means for its row: sent, retry at a time, or failed for good."""
        now = self.clock.now()
        attempts = (row.attempts or 0) + 1
        try:
            if attempt.error is not None:
                raise attempt.error
            result = attempt.result
            assert result is not None
        except PermanentFailure as exc:
            stats.failed += 1
            stats.count_reason("permanent")
            return _Outcome(
                row.id, DeliveryState.failed.value, row.scheduled_for, "permanent", exc.reason, attempted=True
            )
        except (TransientFailure, Exception) as exc:  # noqa: BLE001 — an unclassified error counts as transient
            if isinstance(exc, TransientFailure):
                reason_text = exc.reason
                retry_after: Any = exc.retry_after
                if isinstance(exc, RateLimited) and exc.reset_at is not None:
                    retry_after = exc.reset_at
                if isinstance(exc, RateLimited):  # the account is over its limit: everyone waits
                    (self.x_bucket if table_is_post(row) else self.email_bucket).block_until(exc.reset_at)
            else:
                log.warning("unexpected error sending %s %s: %r", row.campaign_id, row.id, exc)
                reason_text, retry_after = f"{type(exc).__name__}: {exc}", None
            decision = decide_retry(
                attempts=attempts,
                now=now,
                policy=self.retry_policy,
                transient=True,
                retry_after=retry_after,
                rng=self._rng,
            )
            if decision.retry_at is None:
                stats.failed += 1
                stats.count_reason(decision.reason)
                return _Outcome(
                    row.id, DeliveryState.failed.value, row.scheduled_for, decision.reason, reason_text, True
                )
            stats.retried += 1
            return _Outcome(row.id, DeliveryState.retry.value, decision.retry_at, None, reason_text, True)
        if table_is_post(row):
            stats.posts_sent += 1
        else:
            stats.sent += 1
        return _Outcome(
            row.id,
            DeliveryState.sent.value,
            row.scheduled_for,
            attempted=True,
            provider_id=result.provider_message_id,
            sent_at=result.accepted_at or now,
            text=getattr(row, "_post_text", None),
        )

    def _flush(self, table: Table, outcomes: Sequence[_Outcome]) -> None:
        """Write outcomes with one executemany per kind. ``sent`` is written whoever holds the
        claim now (the message did go out); other states only while the claim is still ours."""
        if not outcomes:
            return
        now = self.clock.now()
        is_post = table is POST
        sent = [o for o in outcomes if o.state == DeliveryState.sent.value]
        other = [o for o in outcomes if o.state != DeliveryState.sent.value]
        with self.engine.begin() as conn:
            if sent:
                values: dict[str, Any] = {
                    "state": DeliveryState.sent.value,
                    "attempts": table.c.attempts + 1,
                    "lease_until": None,
                    "reason": None,
                    "last_error": None,
                    "updated_at": now,
                }
                if is_post:
                    values.update(provider_post_id=bindparam("b_pid"), posted_at=bindparam("b_at"))
                    values["text"] = bindparam("b_text")
                else:
                    values.update(provider_message_id=bindparam("b_pid"), sent_at=bindparam("b_at"))
                statement = (
                    update(table)
                    .where(table.c.id == bindparam("b_id"), table.c.state != DeliveryState.sent.value)
                    .values(**values)
                )
                params = [{"b_id": o.row_id, "b_pid": o.provider_id, "b_at": o.sent_at} for o in sent]
                if is_post:
                    for param, outcome in zip(params, sent, strict=True):
                        param["b_text"] = outcome.text
                conn.execute(statement, params)
            if other:
                statement = (
                    update(table)
                    .where(
                        table.c.id == bindparam("b_id"),
                        table.c.state == DeliveryState.claimed.value,
                        table.c.claimed_by == self.worker_id,
                    )
                    .values(
                        state=bindparam("b_state"),
                        scheduled_for=bindparam("b_when"),
                        reason=bindparam("b_reason"),
                        last_error=bindparam("b_error"),
                        attempts=table.c.attempts + bindparam("b_inc"),
                        lease_until=None,
                        claimed_by=None,
                        updated_at=now,
                    )
                )
                conn.execute(
                    statement,
                    [
                        {
                            "b_id": o.row_id,
                            "b_state": o.state,
                            "b_when": o.scheduled_for,
                            "b_reason": o.reason,
                            "b_error": o.last_error,
                            "b_inc": 1 if o.attempted else 0,
                        }
                        for o in other
                    ],
                )

    # --- posts ---------------------------------------------------------------------------------

    def _post_batch(
        self, limit: int, rules: dict[str, CampaignRules], allowed: set[str], occurrence: str | None
    ) -> DispatchStats:
        stats = DispatchStats()
        if self.social_channel is None:
            return stats
        now = self.clock.now()
        claimed, tokens = self._claim(
            self.x_bucket, limit, stats, now=now, table=POST, allowed=allowed, ids=None, occurrence=occurrence
        )
        if not claimed:
            return stats
        stats.claimed = len(claimed)
        unused = tokens - len(claimed)
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(POST).where(POST.c.id.in_(claimed)).order_by(POST.c.id)))
        campaigns = campaigns_of(self.workspace)
        outcomes: list[_Outcome] = []
        released: list[tuple[int, datetime, str | None]] = []
        futures: list[tuple[Any, Future[_Attempt]]] = []
        for row in rows:
            rule = rules[row.campaign_id]
            decision = _post_decision(rule, now)
            if not decision.sends:
                unused += 1
                self._apply_refusal(row, decision, outcomes, released, stats)
                continue
            campaign = campaigns[row.campaign_id]
            context = _BatchData.post_context(row, campaign, self.settings, now)
            try:
                post = self.renderer.render_post(row.template, context, campaign_id=row.campaign_id)
            except Exception as exc:  # noqa: BLE001 — any render failure fails this row, never the batch
                unused += 1
                outcomes.append(
                    _Outcome(
                        row.id,
                        "failed",
                        row.scheduled_for,
                        reason="render_error",
                        last_error=render_error_text(exc),
                    )
                )
                stats.failed += 1
                stats.count_reason("render_error")
                continue
            post = replace(post, campaign=post.campaign or row.campaign_id)
            holder = _PostRow(row, post.text)
            assert self.social_channel is not None
            futures.append((holder, self._pool.submit(_timed, self.social_channel.post, post)))
        if released:
            with self.engine.begin() as conn:
                claims.release(conn, POST, released, worker_id=self.worker_id)
        self._flush(POST, outcomes)
        self._collect(POST, futures, stats)
        self.x_bucket.give_back(unused)
        return stats


class _Recorder:
    """Writes one batch's outcomes from a thread of its own, in the order the sends were handed over.

    The dispatcher's thread renders message after message; were it also to wait for each send
    and write outcomes, every database write would stall rendering (measured with py-spy at
    ~900 msg/s: a third of that thread's time went to writes). Here outcomes are written every
    ``concurrency`` sends or :data:`FLUSH_SECONDS` (at most a quarter of the lease), whichever
    comes first; sends that completed while a write ran join the next write (up to
    :data:`MAX_FLUSH`), since a write costs ~1 ms plus ~40 µs a row on SQLite. What a crash can
    send twice is what was in flight plus what completed since the last write, as before.

    :meth:`finish` waits until everything handed over is written, adds this recorder's counts
    to the batch's stats and re-raises a database error the thread met.
    """

    def __init__(self, dispatcher: Dispatcher, table: Table) -> None:
        self._dispatcher = dispatcher
        self._table = table
        self._queue: queue.SimpleQueue[tuple[Any, Future[_Attempt]] | _Outcome | None] = queue.SimpleQueue()
        self._stats = DispatchStats()
        self._error: BaseException | None = None
        settings = dispatcher.settings
        self._flush_after = min(FLUSH_SECONDS, settings.lease_seconds / 4)
        self._flush_every = max(MIN_FLUSH, settings.concurrency)
        self._thread = threading.Thread(target=self._run, name="tidings-record", daemon=True)
        self._thread.start()

    def put(self, item: tuple[Any, Future[_Attempt]] | _Outcome) -> None:
        """A send in flight (``(row, future)``) or an outcome known already (a render failure)."""
        self._queue.put(item)

    def finish(self, stats: DispatchStats) -> None:
        self._queue.put(None)
        self._thread.join()
        wait_seconds = stats.wait_seconds
        stats.add(self._stats)
        stats.wait_seconds = wait_seconds
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        dispatcher = self._dispatcher
        pending: list[_Outcome] = []
        started = time.monotonic()
        finished = False
        carried: tuple[Any, Future[_Attempt]] | _Outcome | None = None
        try:
            while not finished:
                item, carried = (carried, None) if carried is not None else (self._queue.get(), None)
                if item is None:
                    finished = True
                else:
                    pending.append(self._outcome(item))
                due = len(pending) >= self._flush_every or time.monotonic() - started > self._flush_after
                if due and not finished:
                    # Sends that completed meanwhile go in the same write: they are as much at risk of
                    # being sent twice waiting in the queue as in ``pending``, and one write for many
                    # rows costs little more than one for a few.
                    finished, carried = self._absorb_completed(pending)
                if due or finished:
                    dispatcher._flush(self._table, pending)
                    pending = []
                    started = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 — handed to the dispatcher's thread by finish()
            self._error = exc
            while not finished:  # let finish() return: nothing more is written
                finished = self._queue.get() is None

    def _outcome(self, item: tuple[Any, Future[_Attempt]] | _Outcome) -> _Outcome:
        if isinstance(item, _Outcome):
            return item
        row, future = item
        return self._dispatcher._outcome(row, future, self._stats)

    def _absorb_completed(
        self, pending: list[_Outcome]
    ) -> tuple[bool, tuple[Any, Future[_Attempt]] | _Outcome | None]:
        """Move queued items whose send is over into ``pending`` (up to :data:`MAX_FLUSH`); returns
        (whether the end was reached, the first item still in flight, to handle next)."""
        while len(pending) < MAX_FLUSH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False, None
            if item is None:
                return True, None
            if not isinstance(item, _Outcome) and not item[1].done():
                return False, item
            pending.append(self._outcome(item))
        return False, None


def render_error_text(exc: BaseException) -> str:
    """One line for ``delivery.last_error``: a :class:`RenderError` names its file and line; anything
    else the renderer let escape (a bug there) is still a render failure of this row, with its type."""
    if isinstance(exc, RenderError):
        text = str(exc)
    else:
        log.warning("renderer raised %s instead of RenderError: %s", type(exc).__name__, exc)
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:1000]


def _post_decision(rule: CampaignRules, now: datetime) -> Decision:
    """Posts are broadcasts: only the campaign-level checks of the gate apply."""
    if rule.control == "cancelled":
        return Decision("skip", "cancelled")
    if rule.held:
        return Decision("hold", "paused")
    if outside_window(rule, now):
        return Decision("skip", "outside_window")
    return Decision("send")


class _PostRow:
    """A post row plus the text it was rendered to, so the outcome can store what went out."""

    def __init__(self, row: Any, text: str) -> None:
        self._row = row
        self._post_text = text

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def table_is_post(row: Any) -> bool:
    return isinstance(row, _PostRow)


def _stamped(message: EmailMessage, campaign_id: str, delivery_id: int) -> EmailMessage:
    """Make sure every message carries its campaign and delivery, as headers and custom args."""
    headers = dict(message.headers)
    headers.setdefault(CAMPAIGN_HEADER, campaign_id)
    headers.setdefault(DELIVERY_HEADER, str(delivery_id))
    custom_args = dict(message.custom_args)
    custom_args.setdefault("delivery_id", str(delivery_id))
    custom_args.setdefault("campaign_id", campaign_id)
    if headers == message.headers and custom_args == message.custom_args:
        return message
    return replace(message, headers=headers, custom_args=custom_args)


def _revive(value: Any) -> Any:
    """JSON context values back to Python: ISO date-times to aware datetimes, ISO dates to dates."""
    if isinstance(value, Mapping):
        return {key: _revive(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_revive(item) for item in value]
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" and value[7:8] == "-":
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed
        except ValueError:
            return value
    return value


_CALENDAR_KEY = re.compile(r"^(?P<name>[\w.-]+?)(?P<offset>[+-]\d+)d(?:@(?P<day>\d{4}-\d{2}-\d{2}))?$")


def calendar_context(
    campaign: Any,
    schedules: Any,
    contact: Contact | StoreRow,
    latest_order: ShopOrder | StoreRow | None,
    occurrence: str,
) -> dict[str, Any]:
    """``cutoff`` and ``trigger_date`` for a calendar campaign's message, from the workspace schedules.

    Used when the outbox row does not carry them: a per-contact ``shipping_cutoff`` resolves
    from the contact's country and last order's method, as the planner resolved it; a global
    date is the occurrence's day minus its offset.
    """
    trigger = getattr(campaign, "trigger", None)
    if trigger is None or trigger.kind != "calendar" or schedules is None:
        return {}
    name = str(trigger.spec.date)
    found: dict[str, Any] = {}
    if name == "shipping_cutoff" and callable(getattr(schedules, "shipping_cutoff", None)):
        method = latest_order.shipping_method if latest_order is not None else None
        cutoff = schedules.shipping_cutoff(contact.country, method)
        if cutoff is not None:
            found["cutoff"] = cutoff.as_context()
            found["trigger_date"] = cutoff.date
        return found
    day = global_trigger_date(occurrence)
    if day is not None:
        found["trigger_date"] = day
    return found


def global_trigger_date(occurrence: str) -> date | None:
    """The named date a global calendar occurrence counts from (``christmas-7d@2026-12-18`` → Dec 25)."""
    match = _CALENDAR_KEY.match(occurrence)
    if match and match.group("day"):
        return date.fromisoformat(match.group("day")) - timedelta(days=int(match.group("offset")))
    return None


#: A Core row of a store table (``contact``, ``shop_order``, …): it reads like the model
#: (``row.email``, ``row.placed_at``), which is all the context builders ask of it.
StoreRow = Any


@dataclass(slots=True)
class _BatchData:
    """The store rows a batch's templates need, loaded in a few bulk queries.

    They are read with Core, not the ORM: a Core row has the model's attributes under the same
    names, through the same column types (aware datetimes, decoded JSON, ``Decimal``), which is
    all the context builders read, and building a thousand ORM instances per batch (then
    detaching them) was ~15 % of the dispatcher's CPU per message.
    """

    contacts: dict[int, StoreRow]
    latest_order: dict[int, StoreRow]
    gift_card: dict[int, StoreRow]
    events: dict[int, StoreRow]
    orders_by_external: dict[str, StoreRow]
    cards_by_external: dict[str, StoreRow]

    @classmethod
    def load(cls, engine: Engine, rows: Iterable[Any]) -> _BatchData:
        rows = list(rows)
        contact_ids = sorted({r.contact_id for r in rows if r.contact_id is not None})
        event_ids = sorted({int(r.context["event_id"]) for r in rows if (r.context or {}).get("event_id")})
        contact, order, card, event = (
            _table(Contact),
            _table(ShopOrder),
            _table(GiftCard),
            _table(ShopEvent),
        )
        with engine.connect() as conn:
            contacts = {c.id: c for c in conn.execute(select(contact).where(contact.c.id.in_(contact_ids)))}
            latest: dict[int, StoreRow] = {}
            orders = select(order).where(order.c.contact_id.in_(contact_ids)).order_by(order.c.placed_at)
            for found in conn.execute(orders):
                latest[found.contact_id] = found  # the last one wins: the latest order
            cards: dict[int, StoreRow] = {}
            received = select(card).where(card.c.recipient_contact_id.in_(contact_ids), card.c.balance > 0)
            for found in conn.execute(received.order_by(card.c.issued_at)):
                if found.recipient_contact_id is not None:
                    cards[found.recipient_contact_id] = found
            events = {e.id: e for e in conn.execute(select(event).where(event.c.id.in_(event_ids)))}
            order_ids = {
                str(e.payload["order_id"]) for e in events.values() if (e.payload or {}).get("order_id")
            }
            card_ids = {
                str(e.payload["gift_card_id"])
                for e in events.values()
                if (e.payload or {}).get("gift_card_id")
            }
            by_order = {
                o.external_id: o
                for o in conn.execute(select(order).where(order.c.external_id.in_(sorted(order_ids))))
            }
            by_card = {
                c.external_id: c
                for c in conn.execute(select(card).where(card.c.external_id.in_(sorted(card_ids))))
            }
        return cls(contacts, latest, cards, events, by_order, by_card)

    def context_for(
        self,
        row: Any,
        contact: StoreRow,
        campaign: Any,
        settings: Settings,
        now: datetime,
        schedules: Any = None,
    ) -> dict[str, Any]:
        from engine.render.context import build_context

        stored = _revive(dict(row.context or {}))
        event = self.events.get(int(stored["event_id"])) if stored.get("event_id") else None
        order = self.latest_order.get(contact.id) if contact.id is not None else None
        card = self.gift_card.get(contact.id) if contact.id is not None else None
        if event is not None:
            order = self.orders_by_external.get(str(event.payload.get("order_id")), order)
            card = self.cards_by_external.get(str(event.payload.get("gift_card_id")), card)
        occurrence = stored.get("occurrence_at") or _revive(row.occurrence)
        if "cutoff" not in stored or "trigger_date" not in stored:
            for key, value in calendar_context(campaign, schedules, contact, order, row.occurrence).items():
                stored.setdefault(key, value)
        return build_context(
            settings,
            contact=contact,
            now=now,
            campaign={"id": row.campaign_id, "name": getattr(campaign, "name", row.campaign_id)},
            occurrence=occurrence if isinstance(occurrence, datetime | date) else row.occurrence,
            order=order,
            gift_card=card,
            cutoff=stored.get("cutoff"),
            coupon=stored.get("coupon"),
            event=event,
            trigger_date=stored.get("trigger_date"),
        )

    @staticmethod
    def post_context(row: Any, campaign: Any, settings: Settings, now: datetime) -> dict[str, Any]:
        from engine.render.context import build_context

        stored = _revive(dict(getattr(row, "context", None) or {}))
        occurrence = stored.get("occurrence_at") or _revive(row.occurrence)
        trigger_date = stored.get("trigger_date") or global_trigger_date(str(row.occurrence))
        return build_context(
            settings,
            contact=None,
            now=now,
            campaign={"id": row.campaign_id, "name": getattr(campaign, "name", row.campaign_id)},
            occurrence=occurrence if isinstance(occurrence, datetime | date) else row.occurrence,
            trigger_date=trigger_date,
        )


def _table(model: type[Any]) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def dispatcher_for(engine: Engine, settings: Settings, clock: Clock, workspace: Any) -> Dispatcher:
    """A dispatcher wired as settings say: the workspace's templates, the configured channels."""
    from engine.channels.factory import email_channel_for, social_channel_for
    from engine.render.renderer import Renderer as TemplateRenderer

    templates = getattr(workspace, "templates_dir", None) or settings.workspace_dir / "templates"
    return Dispatcher(
        engine,
        settings,
        clock,
        TemplateRenderer(settings, templates),
        email_channel_for(settings, now=clock.now),
        social_channel_for(settings, now=clock.now),
        workspace,
    )


__all__ = ["DispatchStats", "Dispatcher", "Renderer", "default_worker_id", "dispatcher_for"]
