"""What became of each claimed row, and writing it down: the dispatcher's outcome recorder.

A send is one channel call (:class:`Attempt`, never raising); :func:`classify` says what it means
for its row — ``sent`` with the provider's id, ``retry`` at a time (backoff with jitter,
``Retry-After`` and rate-limit resets honoured), ``failed`` for good with the provider's message.
Refusals of the gate and render failures are outcomes too, known before any send.

:class:`Recorder` writes outcomes in batches (one ``executemany`` per kind) from a thread of its own,
in the order the sends were handed over, so rendering never waits for a database write and a row's
``sent`` state is written long before its lease can run out. Emails and posts share it.

**The duplicate bound.** A message goes out twice only if a crash (a SIGKILL, a power cut) comes
after its send left but before its ``sent`` state was written: its claim then expires and another
attempt sends it again. The recorder holds one of ``TIDINGS_CONCURRENCY`` *permits* for every
message from the moment it is handed to the channel until its outcome is committed, and the
dispatcher takes a permit before it hands over the next one. So at any instant at most
``concurrency`` messages are sent-or-sending but unrecorded, and a crash duplicates at most
``concurrency`` messages — with or without provider faults (a retry is an outcome like any other).
``tests/test_crash.py`` kills a sending process repeatedly and checks the bound (without the
permits it measured up to 66 exposed messages per kill at concurrency 8).

Measured (py-spy, ~900 msg/s): were the rendering thread also to wait for each send and write each
outcome, a third of its time went to writes. Here outcomes are written as soon as half the permits
are waiting for a write (so half keep sending meanwhile), or after :data:`FLUSH_SECONDS` (at most a
quarter of the lease), whichever comes first; a write costs ~1 ms plus ~40 µs a row on SQLite.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.engine import Engine, Row

from engine import metrics
from engine.channels.base import (
    ChannelSuspended,
    DuplicatePost,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    TransientFailure,
)
from engine.clock import Clock
from engine.message import SendResult
from engine.render.errors import RenderError
from engine.runtime.channel_state import suspend
from engine.runtime.ratelimit import RateBucket
from engine.runtime.retry import RetryPolicy, decide_retry
from engine.store.models import DeliveryState, Post

log = logging.getLogger(__name__)

POST: Table = Post.__table__  # type: ignore[attr-defined]
#: ``last_error`` of an attempt whose request went out but whose answer never came: if the next
#: attempt is refused as a duplicate (X), the first one was published.
OUTCOME_UNKNOWN = "outcome unknown: "
#: A rate limit whose reset is further away than this is an account's daily cap, not a window's.
DAILY_CAP_AFTER = 900.0
#: Outcomes are written at least this often (and at least every ``concurrency`` sends): what a
#: crash can send twice is what was in flight plus what completed since the last write.
FLUSH_SECONDS = 0.25


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
    returned: int = 0  # claimed, then given back unsent because the process is stopping
    posts_sent: int = 0
    wait_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    suspended: dict[str, str] = field(default_factory=dict)  # channel → why it sends nothing now

    def add(self, other: DispatchStats) -> None:
        for item in fields(self):
            if item.name == "reasons":
                for reason, count in other.reasons.items():
                    self.reasons[reason] = self.reasons.get(reason, 0) + count
            elif item.name == "suspended":
                self.suspended.update(other.suspended)
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
class Outcome:
    """The new state of one claimed row."""

    row_id: int
    state: str
    scheduled_for: datetime
    reason: str | None = None
    last_error: str | None = None
    attempted: bool = False
    provider_id: str | None = None
    sent_at: datetime | None = None
    text: str | None = None  # what a post said
    #: The channel as a whole cannot send (channel, reason, until): recorded with the outcome.
    suspension: tuple[str, str, datetime | None] | None = None


@dataclass(slots=True)
class Attempt:
    """One channel call, never raising: its result or error, and how long it took (for metrics)."""

    result: SendResult | None
    error: BaseException | None
    seconds: float


def timed(call: Callable[[Any], SendResult], message: Any) -> Attempt:
    started = time.perf_counter()
    try:
        return Attempt(call(message), None, time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 — classified by the recorder, in its own thread
        return Attempt(None, exc, time.perf_counter() - started)


@dataclass(slots=True)
class InFlight:
    """A row handed to a channel: the send's future, and (for posts) the text that went out."""

    row: Row[Any]
    future: Future[Attempt]
    text: str | None = None


def render_error_text(exc: BaseException) -> str:
    """One line for ``last_error``: a :class:`RenderError` names its file and line; anything else the
    renderer let escape (a bug there) is still a render failure of this row, with its type."""
    if isinstance(exc, RenderError):
        text = str(exc)
    else:
        log.warning("renderer raised %s instead of RenderError: %s", type(exc).__name__, exc)
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:1000]


def classify(
    flight: InFlight,
    attempt: Attempt,
    stats: DispatchStats,
    *,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
    buckets: Mapping[str, RateBucket] | None = None,
) -> Outcome:
    """What one attempt means for its row: sent, retry at a time, or failed for good."""
    row = flight.row
    attempts = (row.attempts or 0) + 1
    error = attempt.error
    if isinstance(error, ChannelSuspended):
        # Not this message's fault: it waits, unattempted, while the channel is suspended.
        stats.count_reason("channel_suspended")
        stats.suspended[row.channel] = error.reason
        return Outcome(
            row.id,
            DeliveryState.pending.value,
            row.scheduled_for,
            f"channel_suspended: {error.reason}"[:250],
            error.reason,
            suspension=(row.channel, error.reason, error.until),
        )
    if isinstance(error, DuplicatePost) and str(row.last_error or "").startswith(OUTCOME_UNKNOWN):
        # The previous attempt timed out after the post went out: X now says it exists. Sent.
        stats.posts_sent += 1
        return Outcome(
            row.id, DeliveryState.sent.value, row.scheduled_for, attempted=True, sent_at=now, text=flight.text
        )
    if isinstance(error, PermanentFailure):
        stats.failed += 1
        stats.count_reason("permanent")
        return Outcome(row.id, DeliveryState.failed.value, row.scheduled_for, "permanent", error.reason, True)
    if (
        isinstance(error, RateLimited)
        and flight.text is not None
        and error.reset_at is not None
        and (error.reset_at - now).total_seconds() > DAILY_CAP_AFTER
    ):
        # X's daily cap is the account's: every post waits for its reset, this one unattempted.
        stats.count_reason("channel_suspended")
        reason = f"daily post cap reached ({error.reason})"
        stats.suspended[row.channel] = reason
        return Outcome(
            row.id,
            DeliveryState.pending.value,
            error.reset_at,
            "channel_suspended: daily cap",
            error.reason,
            suspension=(row.channel, reason, error.reset_at),
        )
    if error is not None:
        exc = error
        retry_after: float | datetime | None = None
        if isinstance(exc, TransientFailure):
            reason_text = exc.reason
            retry_after = exc.retry_after
            if isinstance(exc, RateLimited) and exc.reset_at is not None:
                retry_after = exc.reset_at
            if isinstance(exc, RateLimited) and buckets is not None and row.channel in buckets:
                # The account is over its limit: every sender of the channel waits, not only this one.
                buckets[row.channel].block_until(exc.reset_at)
            if isinstance(exc, OutcomeUnknown):
                reason_text = OUTCOME_UNKNOWN + reason_text
        else:
            log.warning("unexpected error sending %s %s: %r", row.campaign_id, row.id, exc)
            reason_text = f"{type(exc).__name__}: {exc}"
        decision = decide_retry(
            attempts=attempts, now=now, policy=policy, transient=True, retry_after=retry_after, rng=rng
        )
        if decision.retry_at is None:
            stats.failed += 1
            stats.count_reason(decision.reason)
            return Outcome(
                row.id, DeliveryState.failed.value, row.scheduled_for, decision.reason, reason_text, True
            )
        stats.retried += 1
        return Outcome(row.id, DeliveryState.retry.value, decision.retry_at, None, reason_text, True)
    result = attempt.result
    assert result is not None
    if flight.text is not None:
        stats.posts_sent += 1
    else:
        stats.sent += 1
    return Outcome(
        row.id,
        DeliveryState.sent.value,
        row.scheduled_for,
        attempted=True,
        provider_id=result.provider_message_id,
        sent_at=result.accepted_at or now,
        text=flight.text,
    )


def write_outcomes(
    engine: Engine, table: Table, outcomes: Sequence[Outcome], *, worker_id: str, now: datetime
) -> None:
    """Write outcomes with one executemany per kind. ``sent`` is written whoever holds the claim now
    (the message did go out); other states only while the claim is still ``worker_id``'s."""
    if not outcomes:
        return
    is_post = table is POST
    sent = [o for o in outcomes if o.state == DeliveryState.sent.value]
    other = [o for o in outcomes if o.state != DeliveryState.sent.value]
    with engine.begin() as conn:
        for outcome in outcomes:
            if outcome.suspension is not None:
                channel, reason, until = outcome.suspension
                suspend(conn, channel, reason, now=now, until=until)
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
                values.update(
                    provider_post_id=bindparam("b_pid"), posted_at=bindparam("b_at"), text=bindparam("b_text")
                )
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
                    table.c.claimed_by == worker_id,
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


class Recorder:
    """Writes one batch's outcomes from a thread of its own, in the order the sends were handed over.

    :meth:`finish` waits until everything handed over is written, adds this recorder's counts to
    the batch's stats and re-raises a database error the thread met.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        worker_id: str,
        clock: Clock,
        policy: RetryPolicy,
        rng: random.Random,
        permits: threading.Semaphore,
        buckets: Mapping[str, RateBucket] | None = None,
        concurrency: int,
        lease_seconds: float,
    ) -> None:
        self._engine = engine
        self._table = table
        self._worker_id = worker_id
        self._clock = clock
        self._policy = policy
        self._rng = rng
        self._permits = permits
        self._buckets = buckets
        self._queue: queue.SimpleQueue[InFlight | Outcome | None] = queue.SimpleQueue()
        self._stats = DispatchStats()
        self._error: BaseException | None = None
        self._flush_after = min(FLUSH_SECONDS, lease_seconds / 4)
        self._flush_every = max(1, concurrency // 2)
        self._thread = threading.Thread(target=self._run, name="tidings-record", daemon=True)
        self._thread.start()

    def put(self, item: InFlight | Outcome) -> None:
        """A send in flight (it holds a permit, given back once its outcome is written) or an outcome
        known already (a refusal, a render failure: nothing was sent)."""
        self._queue.put(item)

    @property
    def failed(self) -> bool:
        """The recorder met an error and writes nothing more: nothing more may be sent."""
        return self._error is not None

    def finish(self, stats: DispatchStats) -> None:
        self._queue.put(None)
        self._thread.join()
        wait_seconds = stats.wait_seconds
        stats.add(self._stats)
        stats.wait_seconds = wait_seconds
        if self._error is not None:
            raise self._error

    def _write(self, pending: list[Outcome], sends: int) -> None:
        write_outcomes(self._engine, self._table, pending, worker_id=self._worker_id, now=self._clock.now())
        for _ in range(sends):
            self._permits.release()

    def _run(self) -> None:
        pending: list[Outcome] = []
        sends = 0  # how many of ``pending`` hold a permit
        started = time.monotonic()
        finished = False
        try:
            while not finished:
                item: InFlight | Outcome | None | object
                try:
                    wait = max(0.0, self._flush_after - (time.monotonic() - started)) if pending else None
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = _NOTHING  # time to write what is waiting
                if item is None:
                    finished = True
                elif isinstance(item, InFlight):
                    pending.append(self._outcome(item))
                    sends += 1
                elif isinstance(item, Outcome):
                    pending.append(item)
                due = sends >= self._flush_every or time.monotonic() - started > self._flush_after
                if pending and (due or finished):
                    self._write(pending, sends)
                    pending, sends = [], 0
                    started = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 — handed to the dispatcher's thread by finish()
            self._error = exc
            for _ in range(sends):
                self._permits.release()  # nothing more is written; the dispatcher must not wait forever
            while not finished:
                item = self._queue.get()
                finished = item is None
                if isinstance(item, InFlight):
                    self._permits.release()

    def _outcome(self, item: InFlight) -> Outcome:
        attempt = item.future.result()
        outcome = classify(
            item, attempt, self._stats, now=self._clock.now(), policy=self._policy, rng=self._rng
        )
        metrics.record_send(item.row.campaign_id, item.row.channel, outcome.state, attempt.seconds)
        if outcome.state == DeliveryState.retry.value:
            metrics.record_retry(item.row.channel)
        return outcome


_NOTHING = object()


__all__ = [
    "Attempt",
    "DispatchStats",
    "InFlight",
    "Outcome",
    "Recorder",
    "classify",
    "render_error_text",
    "timed",
    "write_outcomes",
]
