"""``tidings run``: the long-running daemon.

One process: an APScheduler ``BackgroundScheduler`` (persistent job store on the same
database) fires campaign triggers; a runtime tick on its own thread (every ``TICK_SECONDS``,
or at once after a fire or new events) pumps new shop events into flows, advances due flow
steps and drains the outbox through the dispatcher;
a watcher reloads the workspace when files change (or on SIGHUP) and keeps the last good
version when the new one does not validate; the public app (unsubscribe, webhooks, events,
health, metrics) listens on ``TIDINGS_PUBLIC_BIND``.

Every daemon serves the public app; only the leader plans and fires (:mod:`engine.leadership`):
it holds the ``leader`` lease, renews it every few seconds, and checks it before every fire
and inside every plan's transaction. A standby takes over within ``TIDINGS_LEADER_TTL_SECONDS``
of the leader's last renewal, whatever stopped it (a crash, a SIGSTOP, a lost connection);
a leader that finds its lease gone logs it once, stops its scheduler and serves on as a
standby. On SQLite (one machine's file) a second ``tidings run`` refuses to start.

Fires are written to the fire ledger (:mod:`engine.fire_ledger`) before APScheduler moves
their job on, and marked done in the plan's own transaction; a new leader completes the ones
left unfinished (a leader killed while it planned, or between APScheduler's move and the fire).

Shutdown (SIGTERM/SIGINT): stop taking work, let the running tick finish (in-flight sends
complete and are recorded; whatever was claimed but not sent goes back to pending), hand the
lease over (a standby leads at its next attempt), stop the web server. Nothing is lost;
anything cut short by a hard kill is claimable again one lease after its last heartbeat.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine, make_url

from engine import fire_ledger
from engine import scheduler as jobs
from engine.clock import Clock, SystemClock
from engine.errors import TidingsError
from engine.leadership import Leadership, LeadershipLost
from engine.liveness import Watchdog
from engine.render.accepted import AcceptedTemplates
from engine.runtime import flows
from engine.runtime.ab_tests import decide_due_tests
from engine.runtime.dispatcher import Dispatcher, dispatcher_for
from engine.runtime.event_pump import process_events, pump_due_events
from engine.runtime.fire import fire, resolve_occurrence
from engine.runtime.heartbeat import LeaseHeartbeat
from engine.runtime.occurrences import OccurrenceError
from engine.runtime.planner import PlanStats
from engine.runtime.upcoming import NextSend, next_sends
from engine.settings import Settings
from engine.store import write_transaction
from engine.store.models import Delivery, DeliveryState
from engine.workspace.loader import Workspace, load_workspace
from engine.workspace.schedules import Schedules

if TYPE_CHECKING:
    from engine.fanout import Publisher

log = logging.getLogger("tidings.daemon")

TICK_SECONDS = 2.0
STATUS_SECONDS = 60.0
#: A fire that failed (not for lack of leadership) is tried again after this long.
FIRE_RETRY_SECONDS = 60.0
#: How long a tick waits for a fire in progress before leaving events and flows to the next one.
FIRE_LOCK_WAIT_SECONDS = 1.0
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


class AlreadyRunning(TidingsError):
    """Another daemon owns this database."""


# --- single instance on SQLite, a fenced job store --------------------------------------------------


class InstanceLock:
    """One ``tidings run`` per SQLite file: an exclusive file lock beside it.

    SQLite is one machine's store, so a second daemon there could only ever wait; it refuses to
    start instead, naming the one that runs. (PostgreSQL daemons share a leader lease instead.)
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self._file: Any = None

    def acquire(self) -> None:
        path = self.database.with_name(self.database.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 — held open for the daemon's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(
                f"another `tidings run` ({holder}) is already running on {self.database}; stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def sqlite_database(engine: Engine) -> Path | None:
    """The SQLite file behind ``engine``; None for any other database."""
    url = make_url(engine.url.render_as_string(hide_password=False))
    if url.get_backend_name() != "sqlite":
        return None
    return Path(url.database or "tidings.db")


class LedgerExecutor(JobExecutor):  # type: ignore[misc]
    """APScheduler's thread pool, writing each campaign run to the fire ledger before it starts it.

    ``_process_jobs`` submits a due run, then moves the job on in its store. Writing the fire down
    here, in the scheduler's thread, puts it in the ledger before the move: no run can vanish
    between the two (see :meth:`Daemon.note_due`).
    """

    def __init__(self, note_due: Callable[[Any], None], max_workers: int) -> None:
        super().__init__(max_workers)
        self._note_due = note_due

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        if job.id.startswith(jobs.JOB_PREFIX):
            self._note_due(job)
        super().submit_job(job, run_times)


class FencedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's job store on the shared database, read and written only while leading.

    Two schedulers on one job store lose or double runs (LIBRARY-NOTES). A leader that was
    stopped wakes up with its scheduler still running: before anything else, that scheduler
    would take the due jobs and move them on in the store the new leader now runs. Here it
    finds nothing due and writes nothing until leadership is settled.
    """

    def __init__(self, *, may_act: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._may_act = may_act

    def get_due_jobs(self, now: datetime) -> list[Any]:
        if not self._may_act():
            return []
        due: list[Any] = super().get_due_jobs(now)
        return due

    def update_job(self, job: Any) -> None:
        if self._may_act():
            super().update_job(job)

    def remove_job(self, job_id: str) -> None:
        if self._may_act():
            super().remove_job(job_id)


# --- the daemon ------------------------------------------------------------------------------


@dataclass
class DaemonStatus:
    started_at: datetime | None = None
    last_tick_at: datetime | None = None
    last_tick_error: str | None = None
    reloads: int = 0
    rejected_reloads: int = 0
    last_problems: list[str] = field(default_factory=list)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        clock: Clock | None = None,
        serve_public: bool = True,
        watch: bool = True,
        tick_seconds: float = TICK_SECONDS,
        say: Callable[[str], None] = print,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock or SystemClock()
        self.serve_public = serve_public
        self.watch = watch
        self.tick_seconds = tick_seconds
        self.say = say
        self.on_started = on_started
        self.status = DaemonStatus()
        self.stop_event = threading.Event()
        self._reload_lock = threading.Lock()
        self._fire_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._tick_lock = threading.Lock()
        self._tick_now = threading.Event()
        self._uvicorn: Any = None
        self._public_sock: socket.socket | None = None  # bound at start (_bind_public)
        #: Every long-running loop of this process, supervised (engine.liveness): /healthz names a
        #: dead or stuck one within seconds, and dead ones are restarted where that is safe.
        self.watchdog = Watchdog()
        #: Set by :meth:`stop` when work was still in flight at the shutdown bound (what, in words).
        self.abandoned: str | None = None
        database = sqlite_database(engine)
        self.instance_lock = InstanceLock(database) if database is not None else None
        _protect_once(engine, settings.leader_ttl_seconds)
        self.leadership = Leadership(
            engine, self.clock, settings, on_elected=self._role_news, on_lost=self._role_news
        )
        self._leading = threading.Event()
        #: Set once start() knows this daemon's first role: /healthz says "starting" (503) before.
        self._settled = threading.Event()
        self._role_changed = threading.Event()
        self._role_lock = threading.Lock()
        self._ever_led = False
        self._scheduler_used = False
        self._leading_since: datetime | None = None
        self._refused: set[tuple[str, str]] = set()
        self.workspace: Workspace = self._load_or_fail()
        self.dispatcher: Dispatcher = dispatcher_for(engine, settings, self.clock, self.workspace)
        self.dispatcher.progress = self.watchdog.reporter("tick")
        # Sends render from a reviewed copy of the templates: a later edit that fails under the send
        # budget keeps its last good version (engine.render.accepted).
        self.accepted_templates = AcceptedTemplates(settings)
        first_review = self.accepted_templates.review(self.workspace)
        for line in first_review.lines():
            log.warning("start: %s", line)
        self.dispatcher.renderer.use_templates(first_review.directory, self.workspace.schedules.labels)
        # Claims are leased for TIDINGS_LEASE_SECONDS and kept alive while a drain sends them.
        self.heartbeat = LeaseHeartbeat(engine, self.clock, lease_seconds=settings.lease_seconds)
        # With a broker, sends fan out to `tidings worker` processes; the outbox stays the source of truth.
        self.publisher: Publisher | None = None
        if settings.broker_url:
            from engine.fanout import Publisher  # Celery loads only when a broker is configured

            self.publisher = Publisher(settings, engine, self.clock, workspace=lambda: self.workspace)
        self.scheduler = self._new_scheduler()

    def _new_scheduler(self) -> jobs.DaemonScheduler:
        """A scheduler for one term of leadership (APScheduler cannot start again once shut down)."""
        settings = self.settings
        return jobs.DaemonScheduler(
            timezone="UTC",
            jobstores={
                "default": FencedJobStore(
                    may_act=self._may_act, engine=self.engine, tablename="apscheduler_jobs"
                ),
                "runtime": MemoryJobStore(),
            },
            executors={"default": LedgerExecutor(self.note_due, 4)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(settings.misfire_grace_seconds) or None,
            },
        )

    # --- workspace ---------------------------------------------------------------------------

    def _load_or_fail(self) -> Workspace:
        result = load_workspace(self.settings.workspace_dir, default_timezone=self.settings.timezone)
        if not result.ok:
            first = result.errors[0]
            raise TidingsError(
                f"the workspace has {len(result.errors)} problem(s); first: {first} (run `tidings validate`)"
            )
        return result.workspace

    def reload(self, reason: str = "files changed") -> bool:
        """Re-read the workspace; apply it only when it validates, and send from templates that render.

        Every template that changed is rendered against its samples under the send budget
        (``AcceptedTemplates.review``) before the dispatcher's renderer reads the new copy; one
        that fails keeps its last good version, and the console and log say why in one line.
        ``self.accepted_templates`` is made at start, where every template is checked once.
        """
        with self._reload_lock:
            result = load_workspace(self.settings.workspace_dir, default_timezone=self.settings.timezone)
            if not result.ok:
                self.status.rejected_reloads += 1
                self.status.last_problems = [str(p) for p in result.errors]
                for problem in result.errors:
                    log.warning("reload rejected (%s): %s", reason, problem)
                self.say(
                    f"Reload rejected: {len(result.errors)} problem(s), still running the last good version "
                    f"— first: {result.errors[0]}"
                )
                return False
            review = self.accepted_templates.review(result.workspace)
            held_back = review.lines()
            for line in held_back:
                log.warning("reload (%s): %s", reason, line)
                self.say(f"Reload: {line}")
            self.workspace = result.workspace
            self.dispatcher.workspace = result.workspace
            self.dispatcher.renderer.use_templates(review.directory, result.workspace.schedules.labels)
            with self._role_lock:  # a standby's jobs are synced when it takes the lead
                jobs_line = self._sync().summary() if self._leading.is_set() else "synced when leading"
            self.status.reloads += 1
            self.status.last_problems = held_back
            self.say(f"Reloaded the workspace ({reason}): jobs {jobs_line}")
            return True

    def _sync(self) -> jobs.SyncReport:
        return jobs.sync_jobs(
            self.scheduler,
            self.workspace,
            default_zone=self.settings.zone,
            now=self.clock.now(),
            misfire_grace_seconds=self.settings.misfire_grace_seconds,
        )

    # --- what the jobs call --------------------------------------------------------------------

    def fire_campaign(self, campaign_id: str, occurrence_key: str | None) -> None:
        """What every campaign job runs: record the fire, plan it under the leader's fence."""
        campaign = self.workspace.campaigns.get(campaign_id)
        if campaign is None:
            log.warning("job for campaign %s, which is no longer in the workspace", campaign_id)
            return
        with self._fire_lock:
            done = self._already_fired(campaign, occurrence_key)
            stats = None if done else self._fire(campaign, occurrence_key)
        if done:
            # a one-off added again at a restart, a DST double fire: planning it again adds nothing
            # but can take minutes (a million contacts), so the ledger says it is done
            self.say(f"Fired {campaign_id}: 0 new deliveries (already fired: {done})")
            return
        if stats is None:
            return
        self.say(f"Fired {campaign_id}: {stats.created} new {stats.mode}")
        self._tick_now.set()  # send what it planned now, not at the next interval

    def _already_fired(self, campaign: Any, occurrence_key: str | None) -> str | None:
        """The occurrence's key when the ledger has its fire done, else None."""
        try:
            key = resolve_occurrence(
                self.workspace, campaign, occurrence_key, clock=self.clock, settings=self.settings
            ).key
        except OccurrenceError:
            return None  # _fire says why
        done = fire_ledger.state_of(self.engine, campaign.key, key) == fire_ledger.FireState.done.value
        return key if done else None

    def _fire(self, campaign: Any, occurrence_key: str | None) -> PlanStats | None:
        """Record the fire in the ledger, plan it with the fence and the ledger's ``done`` in the plan's
        transaction. None (logged) when this daemon may not fire now, or the fire failed."""
        try:
            occurrence = resolve_occurrence(
                self.workspace, campaign, occurrence_key, clock=self.clock, settings=self.settings
            )
        except OccurrenceError as exc:
            log.warning("not firing %s: %s", campaign.key, exc)
            return None
        key = occurrence.key
        try:
            epoch = self.leadership.guard()
            record = fire_ledger.begin(
                self.engine, campaign.key, key, epoch=epoch, now=self.clock.now(), fence=self.leadership.fence
            )
            finished: list[bool] = []

            def fence_and_finish(conn: Connection) -> None:
                self.leadership.fence(conn)
                fire_ledger.finish(conn, record, now=self.clock.now())
                finished.append(True)

            stats = fire(
                self.engine,
                self.workspace,
                campaign,
                occurrence,
                clock=self.clock,
                settings=self.settings,
                fence=fence_and_finish,
            )
            if not finished:  # nothing was planned (a draft or paused campaign): no plan transaction ran
                with write_transaction(self.engine) as conn:
                    fence_and_finish(conn)
        except LeadershipLost as exc:
            if self.leadership.is_leader:  # a late renewal, not a lost lease: fire it once renewed
                self._refused.add((campaign.key, key))
            log.warning("not firing %s occurrence %s: %s", campaign.key, key, exc)
            return None
        except Exception:  # noqa: BLE001 — the ledger keeps it `planning`; the next tick tries again
            log.exception(
                "firing %s occurrence %s failed; trying again in %.0f s",
                campaign.key,
                key,
                FIRE_RETRY_SECONDS,
            )
            return None
        self._refused.discard((campaign.key, key))
        return stats

    def _complete_fires(self) -> None:
        """Fire again what the ledger says was never completed: a previous leader's fires, this
        one's failures after :data:`FIRE_RETRY_SECONDS`, and fires refused while a renewal was late."""
        try:
            epoch = self.leadership.guard()
        except LeadershipLost:
            return
        now = self.clock.now()
        retry_before = now - timedelta(seconds=FIRE_RETRY_SECONDS)
        for entry in fire_ledger.unfinished(self.engine, started_before=retry_before, epoch_below=epoch):
            campaign = self.workspace.campaigns.get(entry.campaign_id)
            if campaign is None:
                reason = "the campaign is no longer in the workspace"
                fire_ledger.fail(self.engine, entry.id, reason, now=now, fence=self.leadership.fence)
                log.warning(
                    "not completing the fire of %s %s: %s", entry.campaign_id, entry.occurrence, reason
                )
                continue
            stats = self._fire(campaign, entry.occurrence)
            if stats is not None:
                self.say(
                    f"Completed an interrupted fire of {campaign.key} ({entry.occurrence}, "
                    f"begun in epoch {entry.epoch}): {stats.created} new {stats.mode}"
                )
        for campaign_id, key in sorted(self._refused):
            campaign = self.workspace.campaigns.get(campaign_id)
            if campaign is None:
                self._refused.discard((campaign_id, key))
                continue
            stats = self._fire(campaign, key)
            if stats is not None:
                self.say(
                    f"Fired {campaign_id} ({key}, held back while the lease was late): {stats.created} new"
                )

    def note_due(self, job: Any) -> None:
        """APScheduler is about to run ``job``: write its fire to the ledger first, as ``planning``.

        Called from the scheduler's thread before the run is handed to an executor thread, and so
        before APScheduler moves the job on in its store: a leader killed in between leaves the
        fire in the ledger, and the next leader completes it. (Otherwise a cron job's run would be
        gone: its next run time already moved, nothing recorded.) Raises
        :class:`LeadershipLost` on a standby, and the run is not started.
        """
        campaign = self.workspace.campaigns.get(job.kwargs.get("campaign_id", ""))
        if campaign is None:
            return  # the run itself says so
        occurrence = resolve_occurrence(
            self.workspace,
            campaign,
            job.kwargs.get("occurrence_key"),
            clock=self.clock,
            settings=self.settings,
        )
        epoch = self.leadership.guard()
        if (
            fire_ledger.state_of(self.engine, campaign.key, occurrence.key)
            == fire_ledger.FireState.done.value
        ):
            return  # fired already: the run says so, and plans nothing
        fire_ledger.begin(
            self.engine,
            campaign.key,
            occurrence.key,
            epoch=epoch,
            now=self.clock.now(),
            fence=self.leadership.fence,
        )

    def on_events_stored(self, event_ids: list[int]) -> None:
        """The public app's hook: enrol contacts for new shop events at once (the leader; a standby
        leaves them stored, and the leader's tick enrols them)."""
        if not self._may_act():
            return
        with self._fire_lock:
            process_events(self.engine, self.workspace, event_ids, self.clock, self.settings)
        self._tick_now.set()

    def tick(self) -> None:
        """Events → flows → outbox, on the ticker thread (tests call it directly); never twice at once.
        Only the leader ticks: a standby's tick does nothing."""
        with self.watchdog.working("tick", "waiting for the previous tick"), self._tick_lock:
            if self._leading.is_set():
                self._tick()

    def _tick(self) -> None:
        step = self.watchdog.reporter("tick")
        try:
            self.leadership.guard()
            if self.publisher is not None:
                step("re-publishing what workers lost")
                self.publisher.sweep()  # first: recovering a dead worker's rows never waits for a fire
            # a fire planning a million rows holds the lock for a minute: events and flows then wait
            # for a later tick, and sending goes on meanwhile
            step("waiting for a fire in progress")
            if self._fire_lock.acquire(timeout=FIRE_LOCK_WAIT_SECONDS):
                try:
                    step("completing interrupted fires")
                    self._complete_fires()
                    step("enrolling contacts for new shop events")
                    pump_due_events(self.engine, self.workspace, self.clock, self.settings)
                    step("advancing flows")
                    flows.advance_due(self.engine, self.workspace, self.clock, self.settings)
                    step("deciding A/B tests")
                    decide_due_tests(self.engine, self.workspace, self.clock, self.settings)
                finally:
                    self._fire_lock.release()
            if self.publisher is not None:
                step("publishing due messages to workers")
                self.publisher.publish_due()
            else:
                step("sending")
                with self.heartbeat.watching(self.dispatcher.worker_id):
                    self._drain()
            self.status.last_tick_at = self.clock.now()
            self.status.last_tick_error = None
        except LeadershipLost as exc:
            log.info("tick skipped: %s", exc)
        except Exception as exc:  # noqa: BLE001 — a bad tick must not kill the daemon
            self.status.last_tick_error = f"{type(exc).__name__}: {exc}"
            log.exception("runtime tick failed; retrying on the next tick")

    def _may_act(self) -> bool:
        try:
            self.leadership.guard()
        except LeadershipLost:
            return False
        return True

    def _drain(self) -> None:
        """Send what is due through the one send loop; a stop request ends it after the current batch,
        so a SIGTERM waits for one batch, not for a whole rate-limited send."""
        self.dispatcher.drain(stop=self.stop_event)

    # --- status --------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(DELIVERY.c.state, func.count()).group_by(DELIVERY.c.state)).all()
        return {state: count for state, count in rows}

    def status_line(self) -> str:
        counts = self.counts()
        queued = counts.get("pending", 0) + counts.get("claimed", 0)
        return (
            f"sent {counts.get('sent', 0):,} · queued {queued:,} · retrying {counts.get('retry', 0):,} · "
            f"failed {counts.get('failed', 0):,} · skipped {counts.get('skipped', 0):,}"
        )

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows. A leader is alive while its scheduler runs and its ticks are recent;
        a standby while it keeps trying to take over. Both say which role they have, and the last
        time this daemon lost the lead, and why."""
        lease = self.leadership.status()
        ticker = self.watchdog.thread("tick")
        ticking = ticker is not None and ticker.is_alive() and not self.stop_event.is_set()
        leading = self._leading.is_set()
        last = self.status.last_tick_at
        if not self._settled.is_set():
            ok, scheduler = False, "starting"
        elif leading:
            since = self._leading_since or self.clock.now()
            young = (self.clock.now() - since).total_seconds() < 120
            stale = (
                last is None
                or last < since
                or ((self.clock.now() - last).total_seconds() > max(120.0, self.tick_seconds * 30))
            )
            ok = self.scheduler.running and ticking and (not stale or young)
            scheduler = "ok" if ok else "down"
        else:
            ok = ticking and self.leadership.keeping
            scheduler = "standby" if ok else "down"
        return {
            "alive": ok,  # the public app answers 503 when this is False
            "role": "leader" if leading else "standby",
            "scheduler": scheduler,
            "scheduler_alive": ok,
            "last_tick_at": last.isoformat() if last else None,
            "last_tick_error": self.status.last_tick_error,
            "leadership": lease,
            # a dead or stuck loop, in one line each: /healthz says "degraded" and lists them
            "problems": self.watchdog.problems(),
            "loops": self.watchdog.report(),
        }

    def upcoming(self) -> dict[str, list[NextSend]]:
        """Each active scheduled campaign's next sends, from its own audience (engine.runtime.upcoming)."""
        now = self.clock.now()
        found: dict[str, list[NextSend]] = {}
        with self.engine.connect() as conn:
            for campaign in sorted(self.workspace.campaigns.values(), key=lambda c: c.key):
                if campaign.status.value == "active" and campaign.trigger.event is None:
                    found[campaign.key] = next_sends(
                        conn, self.workspace, campaign, settings=self.settings, now=now
                    )
        return found

    def schedule_table(self, upcoming: dict[str, list[NextSend]] | None = None) -> list[tuple[str, str]]:
        """What each campaign does next: the first moment a contact it reaches is due, in that
        contact's zone, and how many it reaches."""
        upcoming = self.upcoming() if upcoming is None else upcoming
        rows = []
        for campaign in sorted(self.workspace.campaigns.values(), key=lambda c: c.key):
            status = campaign.status.value
            if status != "active":
                rows.append((campaign.key, status))
                continue
            if campaign.trigger.event is not None:
                rows.append((campaign.key, f"on {campaign.trigger.event.type}"))
                continue
            sends = upcoming.get(campaign.key) or []
            if not sends:
                rows.append((campaign.key, "nothing ahead (past, outside its window or nobody to reach)"))
                continue
            first = sends[0]
            calendar = campaign.trigger.calendar
            per_contact = campaign.trigger.local_time or (
                calendar is not None and Schedules.is_per_contact(calendar.date)
            )
            line = first.describe()
            if campaign.is_broadcast and first.state == "upcoming":
                line = f"{first.label()} · a post"
            elif per_contact and first.state == "upcoming":
                line = f"from {line}"
            rows.append((campaign.key, line))
        return rows

    @staticmethod
    def next_up(upcoming: dict[str, list[NextSend]], count: int = 3) -> list[NextSend]:
        """The next few moments anything goes out, across campaigns (not those already sent)."""
        pending = [send for sends in upcoming.values() for send in sends if send.state != "sent"]
        return sorted(pending, key=lambda send: send.at)[:count]

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the public app, then lead or stand by; returns once leading (jobs in step) or standing by.

        On SQLite a second daemon raises :class:`AlreadyRunning` before anything starts.
        """
        if self.instance_lock is not None:
            self.instance_lock.acquire()
        if self.serve_public:
            try:
                self._public_sock = self._bind_public()
            except TidingsError:
                if self.instance_lock is not None:
                    self.instance_lock.release()
                raise
        self.watchdog.start()
        self.heartbeat.start()
        self.watchdog.watch("heartbeat", alive=lambda: self.heartbeat.alive, restart=self.heartbeat.start)
        if self.serve_public:
            self._start_public_app()
        if self.watch:
            self._start_watcher()
        # A tick's step (one render, one send slot) is bounded; a tick that stops moving is stuck.
        self.watchdog.spawn("tick", self._tick_forever, bound=self.settings.stall_seconds)
        self.watchdog.spawn("role", self._conduct)
        # SQLite's file lock already makes this the only daemon: take the lease even if a crashed one holds it
        leading = self.leadership.start(force=self.instance_lock is not None)
        self.watchdog.watch("lease", alive=lambda: self.leadership.keeping, restart=self.leadership.keep)
        self.watchdog.watch(
            "scheduler",
            alive=lambda: not self._leading.is_set() or self.scheduler.alive,
            restart=self._restart_scheduler,
            bound=self.settings.stall_seconds,
            busy_for=lambda: self.scheduler.busy_for(),
        )
        if leading:
            self._apply_role()
            self._settled.set()
            return
        self._settled.set()
        seen = self.leadership.status()
        self.say(
            f"Standby: {seen['leader'] or 'another daemon'} leads (epoch {seen['leader_epoch']}); serving "
            f"the public app, and taking over within {self.settings.leader_ttl_seconds:g} s if it stops."
        )

    def _role_news(self, _news: object) -> None:
        """The lease keeper's news (elected, or lost): the role thread acts on it."""
        self._role_changed.set()

    def _conduct(self) -> None:
        while not self.stop_event.is_set():
            self._role_changed.wait(1.0)
            self._role_changed.clear()
            if not self.stop_event.is_set():
                self._apply_role()

    def _apply_role(self) -> None:
        with self._role_lock:
            if self.stop_event.is_set():
                return
            if self.leadership.is_leader and not self._leading.is_set():
                self._lead()
            elif not self.leadership.is_leader and self._leading.is_set():
                self._step_down()

    def _lead(self) -> None:
        """Take the lead: a scheduler for this term, jobs in step, unfinished and missed fires completed."""
        epoch = self.leadership.epoch
        try:
            if self._scheduler_used:
                self.scheduler = self._new_scheduler()
            self._scheduler_used = True
            jobs.set_firer(self)
            self.scheduler.start(paused=True)
            report = self._sync()
            self.scheduler.add_job(
                lambda: self.say(self.status_line()),
                "interval",
                seconds=STATUS_SECONDS,
                id="status-line",
                jobstore="runtime",
                replace_existing=True,
            )
            with self._fire_lock:
                self._complete_fires()
            self.scheduler.resume()
        except Exception:  # noqa: BLE001 — hand the lead to a standby rather than hold it idle
            log.exception("could not take up the lead (epoch %s); giving it up", epoch)
            self._leading.clear()
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            self.leadership.release()
            return
        log.info("scheduler started (epoch %s): jobs %s", epoch, report.summary())
        if not self._ever_led:
            self._ever_led = True
            self.status.started_at = self.clock.now()
            if self.on_started is not None:
                self.on_started()
        else:
            self.say(f"Leading (epoch {epoch}): jobs {report.summary()}")
        # last: /healthz says "leader" and the tick starts once all of the above is done
        self._leading_since = self.clock.now()
        self._leading.set()
        self._tick_now.set()

    def _restart_scheduler(self) -> None:
        """The scheduler's thread died while this daemon leads: a new term's scheduler, its jobs put
        in step again and unfinished fires completed (the fire ledger makes that safe)."""
        with self._role_lock:
            if not self._leading.is_set() or self.stop_event.is_set():
                return
            self._step_down()
            if self.leadership.is_leader:
                self._lead()

    def _step_down(self) -> None:
        """The lease is gone (the keeper logged why): stop the scheduler, keep serving as a standby."""
        self._leading.clear()
        self._refused.clear()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # a fire in progress fails its fence and rolls back

    def _tick_forever(self) -> None:
        """Tick every ``tick_seconds``, or at once when a fire or new events ask for it.

        A thread of its own rather than an APScheduler interval job: a tick that sends a large
        batch outlasts its interval, and a job must not call back into the scheduler (to be
        woken early) while ``shutdown`` holds the scheduler's locks waiting for that very job.
        """
        while not self.stop_event.is_set():
            self.tick()
            self._tick_now.wait(self.tick_seconds)
            self._tick_now.clear()

    def _bind_public(self) -> socket.socket:
        """The public app's socket, bound before anything starts: a taken address is one line, exit 2."""
        from engine.web.listen import bind_socket, split_bind

        host, port = split_bind(self.settings.public_bind)
        return bind_socket(host, port, setting="TIDINGS_PUBLIC_BIND")

    def _start_public_app(self) -> None:
        import uvicorn

        from engine.web.public import create_public_app
        from engine.web.status import workspace_next_up

        app = create_public_app(
            self.settings,
            self.engine,
            self.clock,
            health_probe=self.health,
            on_events_stored=self.on_events_stored,
            schedules=lambda: self.workspace.schedules,
            next_up=workspace_next_up(self.engine, lambda: self.workspace, self.settings),
            workspace=lambda: self.workspace,
        )
        sock = self._public_sock
        if sock is None or sock.fileno() == -1:  # a restart: the server that died closed its socket
            sock = self._public_sock = self._bind_public()
        config = uvicorn.Config(app, log_level="warning", lifespan="off")  # serves on ``sock``
        # uvicorn installs signal handlers only on the main thread; this one leaves SIGTERM to the daemon.
        server = uvicorn.Server(config)
        self._uvicorn = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="tidings-public", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        self.watchdog.watch("public", alive=thread.is_alive, restart=self._start_public_app)

    def _start_watcher(self) -> None:
        from watchfiles import watch

        roots = [
            p
            for p in (
                self.workspace.campaigns_dir,
                self.workspace.templates_dir,
                self.workspace.schedules_dir,
            )
            if p.exists()
        ]
        if not roots:
            return

        started = [False]

        def run() -> None:
            if started[0]:
                # a restart after the watcher died: what changed meanwhile was never seen
                with self.watchdog.working("watcher", "reloading after a restart"):
                    self.reload("the file watcher restarted")
            started[0] = True
            for changes in watch(
                *roots,
                stop_event=self.stop_event,
                debounce=300,
                raise_interrupt=False,
                yield_on_timeout=True,  # an empty set every 5 s: the watcher's sign of life
            ):
                self.watchdog.progress("watcher", "watching files")
                if not changes:
                    continue
                names = sorted({Path(path).name for _, path in changes})
                with self.watchdog.working("watcher", f"reloading ({', '.join(names[:3])})"):
                    self.reload(f"changed: {', '.join(names[:3])}{'…' if len(names) > 3 else ''}")

        # a reload reads YAML and renders templates under their budgets: it ends, or it is stuck
        self.watchdog.spawn("watcher", run, bound=self.settings.stall_seconds)

    def stop(self) -> None:
        """Stop taking work; finish what is in flight; give back what was claimed but not sent; hand the
        lease over — within ``TIDINGS_SHUTDOWN_SECONDS``.

        The tick gives back the rows of its batch not yet rendered (:meth:`Dispatcher.run_once`), so
        what it waits for is the sends in flight and at most one render. Past the bound (a provider
        that hangs, a fire of a million contacts), the daemon stops anyway and says what it left:
        claimed rows come back when their lease runs out, and the fire ledger completes the fire at
        the next start. :attr:`abandoned` then says what was left.
        """
        deadline = time.monotonic() + self.settings.shutdown_seconds

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self.watchdog.stop()  # loops ending from here on are stopping, not dying
        self.stop_event.set()
        self._tick_now.set()
        self._role_changed.set()
        conductor = self.watchdog.thread("role")
        if conductor is not None:
            conductor.join(timeout=left())
        was_leading = self._leading.is_set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        left_behind: list[str] = []
        # a fire in progress holds the fire lock until its plan commits (or rolls back)
        if self._fire_lock.acquire(timeout=left()):
            self._fire_lock.release()
        else:
            left_behind.append("a fire in progress (the fire ledger completes it at the next start)")
        ticker = self.watchdog.thread("tick")
        if ticker is not None:
            ticker.join(timeout=left())  # the messages in flight complete and are recorded
        tick_done = ticker is None or not ticker.is_alive()
        self._leading.clear()
        self.dispatcher.close(wait=tick_done)
        if self.publisher is not None:
            self.publisher.close()
        if tick_done:
            with self.engine.begin() as conn:
                released = conn.execute(
                    update(DELIVERY)
                    .where(
                        DELIVERY.c.state == DeliveryState.claimed.value,
                        DELIVERY.c.claimed_by == self.dispatcher.worker_id,
                    )
                    .values(state=DeliveryState.pending.value, lease_until=None, claimed_by=None)
                ).rowcount
            if released:
                log.info("returned %d claimed messages to the queue", released)
        else:
            # rows being sent right now must not be handed to anyone else: their lease runs out instead
            left_behind.append(
                f"a send batch (its claimed messages are claimable again {self.settings.lease_seconds:g} s "
                "after this stop)"
            )
        self.heartbeat.stop()
        self.leadership.stop(release=True)
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        for thread in [*self._threads, self.watchdog.thread("watcher")]:
            if thread is not None:
                thread.join(timeout=max(1.0, min(10.0, left())))
        if was_leading:  # a standby never pointed the jobs at itself (another daemon in this process may)
            jobs.set_firer(None)
        if self._public_sock is not None:
            self._public_sock.close()
        if self.instance_lock is not None:
            self.instance_lock.release()
        if left_behind:
            self.abandoned = "; ".join(left_behind)
            log.warning(
                "stopped after %g s (TIDINGS_SHUTDOWN_SECONDS) with work left: %s",
                self.settings.shutdown_seconds,
                self.abandoned,
            )

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT; SIGHUP reloads the workspace."""
        previous = {
            sig: signal.signal(sig, lambda *_: self.stop_event.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(
            signal.SIGHUP,
            lambda *_: threading.Thread(target=self.reload, args=("SIGHUP",), daemon=True).start(),
        )
        started = False
        try:
            self.start()
            started = True
            while not self.stop_event.wait(0.5):
                pass
            self.say("Shutting down: finishing in-flight sends…")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if started:  # a daemon that never started (lock refused) has nothing to report
                self.say(f"Stopped. {self.status_line()}")
                if self.abandoned:
                    self.say(
                        f"Left in flight at the {self.settings.shutdown_seconds:g} s bound: {self.abandoned}."
                    )


_protected: weakref.WeakSet[Engine] = weakref.WeakSet()


def _protect_once(engine: Engine, ttl_seconds: float) -> None:
    """:meth:`Leadership.protect` once per engine (tests start several daemons on one)."""
    if engine not in _protected:
        _protected.add(engine)
        Leadership.protect(engine, ttl_seconds)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` on the wall clock (used by tests and `run --until-idle`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
