"""The dispatcher: claim → gate → render → send → record, one batch at a time.

One batch, for emails (``delivery`` rows) and broadcast posts (``post`` rows) alike:

1. **Claim** up to ``limit`` due rows (:mod:`engine.runtime.claims`), no more than the
   channel's token bucket allows right now, and only of campaigns that may send
   (active, not paused, not draft; cancelled ones are claimed so the gate skips them).
2. **Gate** every row (:mod:`engine.runtime.policy`) with the facts of the whole batch loaded
   in a few bulk queries, highest campaign ``priority`` first (then oldest due, then id), so a
   higher-priority message takes a capped slot before a promotion of the same batch. Refused
   rows are skipped with a named reason; quiet hours move a row to the end of the quiet window
   (judged in the zone the planner chose for it); a pause that landed after the claim gives
   rows back.
3. **Render** each message from its row's facts and its contact's stored data — the one
   context definition, :mod:`engine.runtime.message_context` — and **send** it, with at most
   ``TIDINGS_CONCURRENCY`` in flight (a thread pool). A render failure fails the row with
   reason ``render_error`` and is never sent half-made.
4. **Record** outcomes (:class:`engine.runtime.outcomes.Recorder`) in batches as sends complete,
   from a thread of its own.

What a crash costs: rows claimed but not recorded are claimed again when their lease
expires. A message is sent twice only if it was sent-or-sending but not yet recorded at the
crash, and the recorder's permits keep those to at most ``TIDINGS_CONCURRENCY`` at any instant
(:mod:`engine.runtime.outcomes`): a crash duplicates at most ``concurrency`` messages.

:meth:`Dispatcher.drain` is the one send loop: the daemon's tick, ``trigger --wait``,
``simulate`` and the workers' tasks all drain through it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Engine, Row

from engine import metrics
from engine.audience import legal_basis
from engine.channels.base import EmailChannel, SocialChannel
from engine.clock import Clock, SystemClock
from engine.message import EmailMessage, SocialPost
from engine.runtime import claims
from engine.runtime.channel_state import suspensions
from engine.runtime.compose import Renderer, compose_email, compose_post
from engine.runtime.controls import controls
from engine.runtime.facts import MessageFacts
from engine.runtime.goodwill import sending_campaigns
from engine.runtime.message_context import StoredData
from engine.runtime.occurrences import OccurrenceError, legacy_occurrence
from engine.runtime.outcomes import DispatchStats, InFlight, Outcome, Recorder, render_error_text, timed
from engine.runtime.planner import campaign_filters, first_channel, plan_contact
from engine.runtime.policy import (
    TRANSACTIONAL,
    CampaignRules,
    Decision,
    batch_holds,
    batch_order,
    campaign_rules,
    decide,
    decide_post,
    load_recipient_facts,
    note_deferred,
    note_sent,
)
from engine.runtime.ratelimit import RateBucket, email_bucket, x_bucket
from engine.runtime.retry import RetryPolicy
from engine.settings import Settings
from engine.store.models import DeliveryState
from engine.workspace.labels import Labels
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign

log = logging.getLogger(__name__)

DELIVERY = claims.DELIVERY
POST = claims.POST

#: A claimed outbox row (``delivery`` or ``post``), read with Core.
OutboxRow = Row[Any]


class SendRenderer(Renderer, Protocol):
    """The dispatcher's renderer: composing's, plus what the daemon and workers point it at (the
    reviewed copy of the templates, with the workspace's labels)."""

    templates_dir: Path

    def invalidate(self, path: Path | str | None = None) -> None: ...

    def use_templates(self, templates_dir: Path, labels: Labels) -> None: ...


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Sends what is due. ``run_once``/``drain`` run one at a time (a lock); several dispatchers
    (threads, processes, hosts) may share one store: claims keep them apart."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        renderer: SendRenderer,
        email_channel: EmailChannel | None,
        social_channel: SocialChannel | None,
        workspace: Workspace,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
        progress: Callable[[str], None] | None = None,
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
        # Shared by every process and thread sending for the same account (Redis or the store).
        self.email_bucket: RateBucket = email_bucket(settings, clock, engine)
        self.x_bucket: RateBucket = x_bucket(settings, clock, engine)
        self._rng = rng or random.Random()
        # Only a wall clock may be slept on; a fake or simulated clock moves when its owner says.
        self._sleep = sleep if sleep is not None else (time.sleep if isinstance(clock, SystemClock) else None)
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="tidings-send")
        # One permit per message sent-or-sending but not yet recorded: the duplicate bound (outcomes.py).
        self._permits = threading.Semaphore(settings.concurrency)
        self._closed = False
        self._lock = threading.Lock()
        self._campaigns: dict[str, Campaign] = dict(workspace.campaigns)
        #: Told each step of a batch ("rendering …", "waiting for a send slot …"): the daemon's
        #: watchdog (engine.liveness) reports a drain that stops moving.
        self.progress: Callable[[str], None] = progress or _no_progress

    # --- public API -------------------------------------------------------------------------

    def run_once(
        self,
        limit: int | None = None,
        *,
        ids: Sequence[int] | None = None,
        campaign: str | None = None,
        occurrence: str | None = None,
        stop: threading.Event | None = None,
    ) -> DispatchStats:
        """One batch of emails and one of posts.

        ``campaign`` and ``occurrence`` restrict the batch to one fire (``trigger --wait``);
        ``ids`` to given delivery rows (posts are then left alone). Once ``stop`` is set, rows of
        the batch not yet rendered go back to the queue unsent: a SIGTERM waits for the messages
        in flight and at most one render (bounded by ``TIDINGS_RENDER_TIMEOUT_SECONDS``), not
        for the rest of a batch.
        """
        with self._lock:
            limit = limit or self.settings.batch_size
            rules = self._rules()
            allowed = {cid for cid, rule in rules.items() if rule.control == "cancelled" or not rule.held}
            if campaign is not None:
                allowed &= {campaign}
            stats = self._batch(DELIVERY, limit, rules, allowed, ids, occurrence, stop)
            if ids is None and (stop is None or not stop.is_set()):
                posts = self._batch(POST, limit, rules, allowed, None, occurrence, stop)
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
        stop: threading.Event | None = None,
    ) -> DispatchStats:
        """Batches until nothing is due (or one batch with ``until_idle=False``): the one send loop.

        On a wall clock a rate-limited drain waits until tokens are back (at most a second at a
        time, and no longer once ``stop`` is set: a SIGTERM waits for one batch, not for the whole
        send); on any other clock it stops and reports ``wait_seconds``, and the caller moves the
        clock.
        """
        total = DispatchStats()
        batches = 0
        while stop is None or not stop.is_set():
            stats = self.run_once(ids=ids, campaign=campaign, occurrence=occurrence, stop=stop)
            total.add(stats)
            batches += 1
            if not until_idle or (max_batches is not None and batches >= max_batches):
                break
            if stats.wait_seconds > 0 and self._sleep is not None:
                pause = min(stats.wait_seconds, 1.0)
                if stop is not None:
                    stop.wait(pause)
                else:
                    self._sleep(pause)
                continue
            if not stats.claimed:
                break
        return total

    def close(self, *, wait: bool = True) -> None:
        """Stop the send threads: after the sends in flight (``wait``), or at once, cancelling what
        has not started (a shutdown past its bound; a send already running ends on its timeout)."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- one batch ----------------------------------------------------------------------------

    def _rules(self) -> dict[str, CampaignRules]:
        with self.engine.connect() as conn:
            control = controls(conn)
        # The workspace's campaigns and customer care's built-in one (engine.runtime.goodwill).
        self._campaigns = sending_campaigns(self.workspace, self.settings)
        return {
            cid: campaign_rules(
                campaign,
                self.settings,
                control.get(cid, "active"),
                legal_basis(campaign_filters(self.workspace, campaign), first_channel(campaign)),
            )
            for cid, campaign in self._campaigns.items()
        }

    def _batch(
        self,
        table: Table,
        limit: int,
        rules: dict[str, CampaignRules],
        allowed: set[str],
        ids: Sequence[int] | None,
        occurrence: str | None,
        stop: threading.Event | None,
    ) -> DispatchStats:
        stats = DispatchStats()
        posts = table is POST
        channel = self.social_channel if posts else self.email_channel
        bucket = self.x_bucket if posts else self.email_bucket
        if channel is None:
            return stats
        now = self.clock.now()
        with self.engine.connect() as conn:
            suspension = suspensions(conn, now).get("x" if posts else "email")
        if suspension is not None:
            # The whole channel waits (a revoked key, no credits, a daily cap): nothing is claimed, and
            # the drain does not wait for it either (a daily cap lifts in hours: its rows are due then).
            stats.suspended[suspension.channel] = suspension.reason
            return stats
        tokens = bucket.take_up_to(limit)
        if tokens == 0:
            stats.wait_seconds = bucket.seconds_until(1)
            return stats
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
        stats.claimed = len(claimed)
        unused = tokens - len(claimed)
        if claimed:
            unused += self._send_batch(table, claimed, rules, now, stats, stop)
        bucket.give_back(unused)
        return stats

    def _send_batch(
        self,
        table: Table,
        claimed: list[int],
        rules: dict[str, CampaignRules],
        now: datetime,
        stats: DispatchStats,
        stop: threading.Event | None = None,
    ) -> int:
        """Gate, render and send the claimed rows; returns how many were not sent (their tokens go back).

        Rows not yet started when ``stop`` is set, or once the recorder failed (nothing more would
        be recorded, so nothing more may be sent), go back to the queue as they were.
        """
        posts = table is POST
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(table).where(table.c.id.in_(claimed)).order_by(table.c.id)))
            # Highest priority first, so a higher-priority row of this batch takes a capped slot first.
            rows.sort(key=lambda r: batch_order(_priority(rules, r.campaign_id), r.scheduled_for, r.id))
            contact_ids = [] if posts else [r.contact_id for r in rows if r.contact_id is not None]
            caps = [r.frequency_cap.per for r in rules.values() if r.frequency_cap is not None]
            recipients = load_recipient_facts(
                conn,
                contact_ids,
                now=now,
                cap_lookback=max(caps, default=None),
                holds=batch_holds(rules.values()),
                return_window=timedelta(days=self.settings.return_open_days),
                ranked=rules,
                batch=claimed,
            )
            facts = {row.id: self._facts(conn, row, now) for row in rows}
            data = StoredData.load(
                conn,
                contact_ids,
                [f.event_id for f in facts.values() if f.event_id],
                [f.order_id for f in facts.values() if f.order_id],
            )
        recorder = Recorder(
            self.engine,
            table,
            worker_id=self.worker_id,
            clock=self.clock,
            policy=self.retry_policy,
            rng=self._rng,
            permits=self._permits,
            buckets={"email": self.email_bucket, "x": self.x_bucket},
            concurrency=self.settings.concurrency,
            lease_seconds=self.settings.lease_seconds,
        )
        released: list[tuple[int, datetime, str | None]] = []
        unsent = 0
        try:
            for row in rows:
                if (stop is not None and stop.is_set()) or recorder.failed:
                    released.append((row.id, row.scheduled_for, row.reason))
                    stats.returned += 1
                    unsent += 1
                    continue
                rule = rules[row.campaign_id]
                row_facts = facts[row.id]
                if posts:
                    decision = decide_post(rule, now)
                else:
                    if row.category and row.category != rule.category:
                        # The row's category was fixed when it was planned; a later edit of the YAML
                        # does not turn a planned receipt into marketing (or the reverse).
                        rule = replace(rule, category=row.category)
                    recipient = recipients.get(row.contact_id) if row.contact_id is not None else None
                    decision = decide(rule, recipient, channel=row.channel, now=now, zone=row_facts.zone_info)
                    if decision.sends and recipient is not None:
                        note_sent(recipient, rule, now)
                    elif decision.until is not None and recipient is not None:
                        note_deferred(recipient, rule, decision.until)
                if not decision.sends:
                    unsent += 1
                    self._refuse(row, decision, recorder, released, stats)
                    continue
                if not self._render_and_send(table, row, row_facts, data, recorder, now, stats):
                    unsent += 1
            if released:
                with self.engine.begin() as conn:
                    claims.release(conn, table, released, worker_id=self.worker_id)
        finally:
            recorder.finish(stats)
        return unsent

    def _facts(self, conn: Connection, row: OutboxRow, now: datetime) -> MessageFacts:
        """The row's facts as the planner wrote them; a row planned before round 2 gets them from the
        planner's own one-contact decision (the same cells), never from a second algorithm."""
        facts = MessageFacts.from_json(row.context)
        if facts.planned or getattr(row, "contact_id", None) is None:
            return facts
        campaign = self.workspace.campaigns.get(row.campaign_id)
        if campaign is None:
            return facts
        try:
            occurrence = legacy_occurrence(
                campaign, row.occurrence, self.workspace.schedules, self.settings.zone
            )
        except OccurrenceError:
            return facts  # an event or manual occurrence: nothing was decided beyond what the row holds
        planned = plan_contact(
            conn, self.workspace, campaign, occurrence, row.contact_id, settings=self.settings, now=now
        )
        decided = planned.facts
        return replace(decided, event_id=facts.event_id, enrolment_id=facts.enrolment_id, coupon=facts.coupon)

    def _refuse(
        self,
        row: OutboxRow,
        decision: Decision,
        recorder: Recorder,
        released: list[tuple[int, datetime, str | None]],
        stats: DispatchStats,
    ) -> None:
        if decision.action == "skip":
            metrics.record_send(row.campaign_id, row.channel, DeliveryState.skipped.value)
            recorder.put(
                Outcome(row.id, DeliveryState.skipped.value, row.scheduled_for, reason=decision.reason)
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

    def _render_and_send(
        self,
        table: Table,
        row: OutboxRow,
        facts: MessageFacts,
        data: StoredData,
        recorder: Recorder,
        now: datetime,
        stats: DispatchStats,
    ) -> bool:
        """Render one message from its facts and hand it to its channel; False when it failed to render."""
        campaign = self._campaigns[row.campaign_id]
        self.progress(f"rendering message {row.id} of {row.campaign_id}")
        started = time.perf_counter()
        try:
            if table is POST:
                post = self.render_post(row, campaign, facts, now)
            else:
                message = self.render_email(row, campaign, facts, data, now)
            metrics.record_render(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 — any render failure fails this row, never the batch
            recorder.put(
                Outcome(
                    row.id,
                    DeliveryState.failed.value,
                    row.scheduled_for,
                    reason="render_error",
                    last_error=render_error_text(exc),
                )
            )
            stats.failed += 1
            stats.count_reason("render_error")
            return False
        self.progress(
            f"waiting for a send slot ({self.settings.concurrency} messages in flight, {row.channel})"
        )
        self._permits.acquire()  # given back by the recorder once this message's outcome is written
        self.progress(f"sending message {row.id} of {row.campaign_id}")
        if table is POST:
            assert self.social_channel is not None
            recorder.put(InFlight(row, self._pool.submit(timed, self.social_channel.post, post), post.text))
        else:
            assert self.email_channel is not None
            recorder.put(InFlight(row, self._pool.submit(timed, self.email_channel.send, message)))
        return True

    def render_email(
        self, row: OutboxRow, campaign: Campaign, facts: MessageFacts, data: StoredData, now: datetime
    ) -> EmailMessage:
        """The message a delivery row sends, composed from its facts (:mod:`engine.runtime.compose`)."""
        return compose_email(
            self.renderer,
            self.settings,
            campaign,
            template=row.template,
            step_id=row.step_id,
            contact_id=row.contact_id,
            locale=row.locale,
            marketing=row.category != TRANSACTIONAL,
            facts=facts,
            data=data,
            now=now,
            delivery_id=row.id,
            token=row.message_token,
        )

    def render_post(
        self, row: OutboxRow, campaign: Campaign, facts: MessageFacts, now: datetime
    ) -> SocialPost:
        return compose_post(
            self.renderer, self.settings, campaign, template=row.template, facts=facts, now=now
        )


def _priority(rules: dict[str, CampaignRules], campaign_id: str) -> int:
    rule = rules.get(campaign_id)
    return rule.priority if rule is not None else 0


def _no_progress(_doing: str) -> None:
    """Nobody watches this dispatcher's progress (a one-off command, a test)."""


def dispatcher_for(engine: Engine, settings: Settings, clock: Clock, workspace: Workspace) -> Dispatcher:
    """A dispatcher wired as settings say: the workspace's templates, the configured channels."""
    from engine.channels.factory import email_channel_for, social_channel_for
    from engine.render.renderer import Renderer as TemplateRenderer

    return Dispatcher(
        engine,
        settings,
        clock,
        TemplateRenderer(settings, workspace.templates_dir),
        email_channel_for(settings, now=clock.now),
        social_channel_for(settings, now=clock.now),
        workspace,
    )


__all__ = ["DispatchStats", "Dispatcher", "default_worker_id", "dispatcher_for"]
