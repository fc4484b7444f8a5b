"""``tidings run``: the long-running daemon.

One process: an APScheduler ``BackgroundScheduler`` (persistent job store on the same
database) fires campaign triggers; a runtime tick on its own thread (every ``TICK_SECONDS``,
or at once after a fire or new events) pumps new shop events into flows, advances due flow
steps and drains the outbox through the dispatcher;
a watcher reloads the workspace when files change (or on SIGHUP) and keeps the last good
version when the new one does not validate; the public app (unsubscribe, webhooks, events,
health, metrics) listens on ``TIDINGS_PUBLIC_BIND``.

Only one daemon may plan at a time: on SQLite a second ``tidings run`` refuses to start; on
PostgreSQL it waits as a standby until the advisory lock is free.

Shutdown (SIGTERM/SIGINT): stop taking work, let the running tick finish (in-flight sends
complete and are recorded; whatever was claimed but not sent goes back to pending), stop
the web server. Nothing is lost; anything cut short by a hard kill is retried when its
lease expires.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine, make_url

from engine import scheduler as jobs
from engine.clock import Clock, SystemClock
from engine.errors import TidingsError
from engine.render.accepted import AcceptedTemplates
from engine.runtime import flows
from engine.runtime.dispatcher import Dispatcher, dispatcher_for
from engine.runtime.event_pump import process_events, pump_due_events
from engine.runtime.fire import fire
from engine.runtime.upcoming import NextSend, next_sends
from engine.settings import Settings
from engine.store.models import Delivery, DeliveryState
from engine.workspace.loader import Workspace, load_workspace
from engine.workspace.schedules import Schedules

if TYPE_CHECKING:
    from engine.fanout import Publisher

log = logging.getLogger("tidings.daemon")

TICK_SECONDS = 2.0
STATUS_SECONDS = 60.0
PG_LOCK_KEY = 0x7469_6469  # "tidi": one advisory lock per database for the planning daemon
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


class AlreadyRunning(TidingsError):
    """Another daemon owns this database."""


# --- single-instance locks -----------------------------------------------------------------


class DaemonLock:
    """Exclusive right to plan on one database: a file lock beside a SQLite file, else a PG advisory lock."""

    #: How often a standby daemon asks PostgreSQL for the planning lock again.
    poll_seconds = 5.0

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._file: Any = None
        self._conn: Any = None

    def acquire(
        self, *, wait: bool, on_wait: Callable[[], None] | None = None, stop: threading.Event
    ) -> bool:
        url = make_url(self.engine.url.render_as_string(hide_password=False))
        if url.get_backend_name() == "sqlite":
            return self._acquire_file(Path(url.database or "tidings.db"))
        return self._acquire_advisory(wait=wait, on_wait=on_wait, stop=stop)

    def _acquire_file(self, database: Path) -> bool:
        path = database.with_name(database.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 — held open for the daemon's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(
                f"another `tidings run` ({holder}) is already running on {database}; stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle
        return True

    def _acquire_advisory(
        self, *, wait: bool, on_wait: Callable[[], None] | None, stop: threading.Event
    ) -> bool:
        self._conn = self.engine.connect()
        announced = False
        while not stop.is_set():
            got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}).scalar()
            self._conn.commit()
            if got:
                return True
            if not wait:
                self._conn.close()
                self._conn = None
                raise AlreadyRunning("another `tidings run` holds the planning lock on this database")
            if not announced and on_wait is not None:
                on_wait()
                announced = True
            stop.wait(self.poll_seconds)
        self._conn.close()
        self._conn = None
        return False

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None


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
        self._ticker: threading.Thread | None = None
        self._uvicorn: Any = None
        self.lock = DaemonLock(engine, settings)
        self.workspace: Workspace = self._load_or_fail()
        self.dispatcher: Dispatcher = dispatcher_for(engine, settings, self.clock, self.workspace)
        # Sends render from a reviewed copy of the templates: a later edit that fails under the send
        # budget keeps its last good version (engine.render.accepted).
        self.accepted_templates = AcceptedTemplates(settings)
        first_review = self.accepted_templates.review(self.workspace)
        for line in first_review.lines():
            log.warning("start: %s", line)
        self.dispatcher.renderer.templates_dir = first_review.directory
        # With a broker, sends fan out to `tidings worker` processes; the outbox stays the source of truth.
        self.publisher: Publisher | None = None
        if settings.broker_url:
            from engine.fanout import Publisher  # Celery loads only when a broker is configured

            self.publisher = Publisher(settings, engine, self.clock, workspace=lambda: self.workspace)
        self.scheduler = jobs.DaemonScheduler(
            timezone="UTC",
            jobstores={
                "default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs"),
                "runtime": MemoryJobStore(),
            },
            executors={"default": JobExecutor(4)},
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
            self.dispatcher.renderer.templates_dir = review.directory
            self.dispatcher.renderer.invalidate()
            report = self._sync()
            self.status.reloads += 1
            self.status.last_problems = held_back
            self.say(f"Reloaded the workspace ({reason}): jobs {report.summary()}")
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
        campaign = self.workspace.campaigns.get(campaign_id)
        if campaign is None:
            log.warning("job for campaign %s, which is no longer in the workspace", campaign_id)
            return
        with self._fire_lock:
            stats = fire(
                self.engine,
                self.workspace,
                campaign,
                occurrence_key,
                clock=self.clock,
                settings=self.settings,
            )
        self.say(f"Fired {campaign_id}: {stats.created} new {stats.mode}")
        self._tick_now.set()  # send what it planned now, not at the next interval

    def on_events_stored(self, event_ids: list[int]) -> None:
        """The public app's hook: enrol contacts for new shop events at once."""
        with self._fire_lock:
            process_events(self.engine, self.workspace, event_ids, self.clock, self.settings)
        self._tick_now.set()

    def tick(self) -> None:
        """Events → flows → outbox, on the ticker thread (tests call it directly); never twice at once."""
        with self._tick_lock:
            self._tick()

    def _tick(self) -> None:
        try:
            with self._fire_lock:
                pump_due_events(self.engine, self.workspace, self.clock, self.settings)
                flows.advance_due(self.engine, self.workspace, self.clock, self.settings)
            if self.publisher is not None:
                self.publisher.publish_due()
                self.publisher.sweep()
            else:
                self._drain()
            self.status.last_tick_at = self.clock.now()
            self.status.last_tick_error = None
        except Exception as exc:  # noqa: BLE001 — a bad tick must not kill the daemon
            self.status.last_tick_error = f"{type(exc).__name__}: {exc}"
            log.exception("runtime tick failed; retrying on the next tick")

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
        ticking = self._ticker is not None and self._ticker.is_alive()
        alive = self.scheduler.running and ticking and not self.stop_event.is_set()
        last = self.status.last_tick_at
        stale = last is None or (self.clock.now() - last).total_seconds() > max(120.0, self.tick_seconds * 30)
        started = self.status.started_at
        young = started is not None and (self.clock.now() - started).total_seconds() < 120
        ok = alive and (not stale or young)
        return {
            "alive": ok,  # the public app answers 503 when this is False
            "scheduler": "ok" if ok else "down",
            "scheduler_alive": ok,
            "last_tick_at": last.isoformat() if last else None,
            "last_tick_error": self.status.last_tick_error,
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
        self.lock.acquire(
            wait=not self.settings.is_sqlite,
            on_wait=lambda: self.say("Standby: another daemon holds the planning lock; waiting for it."),
            stop=self.stop_event,
        )
        if self.stop_event.is_set():
            return
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
        self.status.started_at = self.clock.now()
        self.scheduler.resume()
        self._ticker = threading.Thread(target=self._tick_forever, name="tidings-tick", daemon=True)
        self._ticker.start()
        log.info("scheduler started: jobs %s", report.summary())
        if self.serve_public:
            self._start_public_app()
        if self.watch:
            self._start_watcher()
        if self.on_started is not None:
            self.on_started()

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
        host, _, port = self.settings.public_bind.rpartition(":")
        config = uvicorn.Config(app, host=host, port=int(port), log_level="warning", lifespan="off")
        # uvicorn installs signal handlers only on the main thread; this one leaves SIGTERM to the daemon.
        server = uvicorn.Server(config)
        self._uvicorn = server
        thread = threading.Thread(target=server.run, name="tidings-public", daemon=True)
        thread.start()
        self._threads.append(thread)

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

        def run() -> None:
            for changes in watch(*roots, stop_event=self.stop_event, debounce=300, raise_interrupt=False):
                names = sorted({Path(path).name for _, path in changes})
                self.reload(f"changed: {', '.join(names[:3])}{'…' if len(names) > 3 else ''}")

        thread = threading.Thread(target=run, name="tidings-watch", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop taking work; finish what is in flight; give back what was claimed but not sent."""
        self.stop_event.set()
        self._tick_now.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self._ticker is not None:
            self._ticker.join()  # the batch in flight completes and is recorded
            self._ticker = None
        self.dispatcher.close()
        if self.publisher is not None:
            self.publisher.close()
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
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)
        jobs.set_firer(None)
        self.lock.release()

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


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` on the wall clock (used by tests and `run --until-idle`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
