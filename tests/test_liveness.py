"""Liveness that tells the truth: a dead or stuck loop of the daemon shows on ``/healthz`` within
seconds, naming the loop and what it was doing; dead loops come back where that is safe; a stop
in the middle of a batch gives back what was not rendered yet.

The watchdog alone runs on a fake monotonic clock; the daemon cases run the real daemon on a
real SQLite store, with its real threads.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from test_daemon_support import add_people, delivery_states, make_workspace, settings_for, write_campaign

from engine.clock import SystemClock
from engine.daemon import Daemon, wait_for
from engine.errors import TidingsError
from engine.liveness import MAX_RESTARTS, Watchdog
from engine.runtime.fire import fire
from engine.settings import Settings

DAILY = """\
name: {name}
status: active
timezone: UTC
audience: {{segment: everyone}}
trigger:
  schedule: {{cron: "0 10 * * *"}}
steps:
  - send: {{channel: email, template: hello}}
"""
CONTACTS = 40


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the watchdog ---------------------------------------------------------------------------


def test_a_loop_that_dies_is_named_with_its_cause_and_started_again() -> None:
    watchdog = Watchdog()
    calls: list[int] = []
    release = threading.Event()

    def loop() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("out of memory while reading campaigns/bomb.yaml")
        release.wait(10)

    first = watchdog.spawn("watcher", loop)
    first.join(5)
    assert watchdog.problems() == [
        "watcher thread died (MemoryError: out of memory while reading campaigns/bomb.yaml); restarting"
    ]

    assert watchdog.supervise() == ["watcher"]
    assert wait_for(lambda: len(calls) == 2, timeout=5)
    assert watchdog.problems() == []
    report = watchdog.report()["watcher"]
    assert report["alive"] and report["restarts"] == 1 and "MemoryError" in str(report["last_death"])
    release.set()
    watchdog.stop()


def test_a_loop_that_keeps_dying_stays_down_and_says_so() -> None:
    watchdog = Watchdog()

    def loop() -> None:
        raise RuntimeError("broken")

    watchdog.spawn("tick", loop)
    for _ in range(MAX_RESTARTS + 1):
        assert wait_for(lambda: not watchdog.report()["tick"]["alive"], timeout=5)
        watchdog.supervise()

    assert watchdog.problems() == [
        f"tick thread is down (RuntimeError: broken): it died {MAX_RESTARTS} times within 1 h "
        "and is no longer restarted"
    ]


def test_a_loop_that_registers_itself_again_on_restart_is_still_given_up() -> None:
    """The public app's restart builds a new server thread and watches it again: its history stays."""
    watchdog = Watchdog()
    starts: list[threading.Thread] = []

    def start() -> None:
        thread = threading.Thread(target=lambda: None)  # dies at once, like a server whose port is taken
        thread.start()
        thread.join()
        starts.append(thread)
        watchdog.watch("public", alive=thread.is_alive, restart=start)

    start()
    for _ in range(MAX_RESTARTS + 3):
        watchdog.supervise()

    assert len(starts) == 1 + MAX_RESTARTS
    assert watchdog.report()["public"]["restarts"] == MAX_RESTARTS
    [problem] = watchdog.problems()
    assert problem.startswith("public thread is down") and "no longer restarted" in problem


def test_a_loop_working_past_its_bound_without_progress_is_stuck_until_it_moves() -> None:
    clock = FakeMonotonic()
    watchdog = Watchdog(monotonic=clock)
    watchdog.watch("tick", alive=lambda: True, bound=60)

    with watchdog.working("tick", "sending"):
        clock.now += 50
        watchdog.progress("tick", "waiting for a send slot (16 messages in flight, email)")
        clock.now += 59
        assert watchdog.problems() == []
        clock.now += 11
        assert watchdog.problems() == [
            "tick: no progress for 70 s while waiting for a send slot (16 messages in flight, email)"
            " (bound 60 s)"
        ]
        watchdog.progress("tick", "sending message 7 of promo")
        assert watchdog.problems() == []
    clock.now += 3600  # idle between ticks is not stuck
    assert watchdog.problems() == []


def test_loops_that_end_because_the_process_stops_are_not_problems() -> None:
    watchdog = Watchdog()
    stop = threading.Event()
    thread = watchdog.spawn("role", lambda: stop.wait(10) and None)
    watchdog.stop()
    stop.set()
    thread.join(5)
    assert watchdog.problems() == [] and watchdog.supervise() == []


# --- the daemon -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws", {"daily": DAILY.format(name="Daily")})


@pytest.fixture
def settings(root: Path, sqlite_engine: Engine, tmp_path: Path) -> Settings:
    add_people(sqlite_engine, CONTACTS)
    port = free_port()
    return settings_for(
        root,
        tmp_path / "tidings.db",
        public_bind=f"127.0.0.1:{port}",
        public_url=f"http://127.0.0.1:{port}",
        # short steps, so that a short stall bound is still longer than any healthy step
        render_timeout_seconds=0.2,
        sendgrid_timeout_seconds=0.2,
        smtp_timeout_seconds=0.2,
        x_timeout_seconds=0.2,
        stall_seconds=0.5,
    )


@pytest.fixture
def started(request: pytest.FixtureRequest, settings: Settings, sqlite_engine: Engine) -> Iterator[Daemon]:
    options = getattr(request, "param", {})
    daemon = Daemon(
        settings,
        sqlite_engine,
        clock=SystemClock(),
        serve_public=options.get("public", False),
        watch=options.get("watch", False),
        tick_seconds=0.1,
        say=lambda _line: None,
    )
    daemon.start()
    yield daemon
    if not daemon.stop_event.is_set() or daemon.scheduler.running:
        daemon.stop()


@pytest.mark.parametrize("started", [{"public": True}], indirect=True)
def test_a_tick_stuck_on_a_locked_database_makes_healthz_degraded_naming_it_and_recovers(
    started: Daemon, settings: Settings
) -> None:
    port = int(settings.public_bind.rpartition(":")[2])
    assert wait_for(lambda: healthz(port)[1].get("status") == "ok", timeout=15), healthz(port)
    database = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    database.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a long import, say)
    try:
        assert wait_for(
            lambda: any(p.startswith("tick: no progress") for p in healthz(port)[1].get("problems", [])),
            timeout=15,
        ), healthz(port)
        status, report = healthz(port)
        assert status == 200 and report["status"] == "degraded"
        (stuck,) = [p for p in report["problems"] if p.startswith("tick")]
        assert " while " in stuck and stuck.endswith("(bound 0.5 s)")
    finally:
        database.execute("ROLLBACK")
        database.close()
    assert wait_for(lambda: healthz(port)[1].get("status") == "ok", timeout=15), healthz(port)


@pytest.mark.parametrize("started", [{"watch": True}], indirect=True)
def test_a_watcher_killed_by_memory_error_comes_back_and_picks_up_the_change_it_missed(
    started: Daemon, root: Path
) -> None:
    real_reload = started.reload
    failures: list[str] = []

    def reload_once_out_of_memory(reason: str = "files changed") -> bool:
        if not failures:
            failures.append(reason)
            raise MemoryError("out of memory")
        return real_reload(reason)

    started.reload = reload_once_out_of_memory  # type: ignore[method-assign]
    write_campaign(root, "daily", DAILY.format(name="Daily (edited)"))

    assert wait_for(lambda: started.workspace.campaigns["daily"].name == "Daily (edited)", timeout=20)
    loop = started.health()["loops"]["watcher"]
    assert loop["alive"] and loop["restarts"] == 1 and "MemoryError" in loop["last_death"]
    assert started.health()["problems"] == []


# APScheduler's thread dies with the error's traceback (threading's hook): that is the event here
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_scheduler_whose_thread_died_is_replaced_with_its_jobs(started: Daemon) -> None:
    dead = started.scheduler
    assert wait_for(lambda: dead.get_job("campaign:daily:0") is not None, timeout=10)

    def broken_pass() -> float | None:
        raise RuntimeError("job store unreadable")

    dead._process_jobs = broken_pass  # type: ignore[method-assign]
    dead.wakeup()

    assert wait_for(lambda: started.scheduler is not dead and started.scheduler.alive, timeout=15)
    assert started.scheduler.get_job("campaign:daily:0") is not None
    assert started.health()["loops"]["scheduler"]["restarts"] == 1
    assert started.health()["alive"] is True


def test_a_stop_mid_batch_sends_what_was_rendered_and_gives_back_the_rest(
    started: Daemon, sqlite_engine: Engine
) -> None:
    renders: list[str] = []
    report = started.dispatcher.progress

    def stop_at_the_third_render(doing: str) -> None:
        report(doing)
        if doing.startswith("rendering"):
            renders.append(doing)
            if len(renders) == 3:
                started.stop_event.set()  # what SIGTERM's handler does

    started.dispatcher.progress = stop_at_the_third_render
    fire(
        sqlite_engine,
        started.workspace,
        "daily",
        None,
        clock=SystemClock(),
        settings=started.settings,
        due_now=True,
    )
    assert wait_for(lambda: started.stop_event.is_set(), timeout=15)
    started.stop()

    assert len(renders) == 3
    assert delivery_states(sqlite_engine, "daily") == {"sent": 3, "pending": CONTACTS - 3}
    assert started.abandoned is None


def test_a_public_address_another_process_holds_is_refused_at_start_in_one_line(
    settings: Settings, sqlite_engine: Engine
) -> None:
    host, _, port = settings.public_bind.rpartition(":")
    with socket.socket() as holder:
        holder.bind((host, int(port)))
        holder.listen()
        daemon = Daemon(settings, sqlite_engine, clock=SystemClock(), watch=False, say=lambda _line: None)
        with pytest.raises(TidingsError) as refused:
            daemon.start()
    assert str(refused.value).startswith(f"TIDINGS_PUBLIC_BIND={settings.public_bind}: cannot listen there (")
    assert refused.value.exit_code == 2
    assert daemon.watchdog.thread("tick") is None  # nothing was started

    # Once the address is free, the same database starts (the refusal let go of its lock).
    again = Daemon(settings, sqlite_engine, clock=SystemClock(), watch=False, say=lambda _line: None)
    again.start()
    try:
        assert wait_for(lambda: healthz(int(port))[0] == 200, timeout=30)
    finally:
        again.stop()
