"""Leadership as a lease with a fencing epoch, and the fire ledger, on SQLite and PostgreSQL.

The lease runs on the fake clock, and so does each daemon's monotonic clock here, so "the leader
was stopped for twenty seconds" is one ``clock.advance``. Real processes (SIGSTOP, a terminated
connection) are in test_leadership_processes.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from test_daemon_support import add_people, delivery_states, make_workspace, settings_for
from test_dispatch_helpers import add_contact
from test_dispatch_support import campaign, workspace, write_templates

from engine import fire_ledger
from engine import scheduler as jobs
from engine.clock import FakeClock, SystemClock
from engine.daemon import Daemon
from engine.leadership import LEADER, LEASE, Leadership, LeadershipLost
from engine.runtime.fire import fire
from engine.settings import Settings
from engine.store.models import FireState

TTL, RENEW = 10.0, 2.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        workspace=tmp_path, secret_key="s" * 40, leader_ttl_seconds=TTL, leader_renew_seconds=RENEW
    )


def daemon_lease(engine: Engine, clock: FakeClock, settings: Settings, name: str) -> Leadership:
    """A daemon's lease whose monotonic clock is the fake one (a stopped process sees time jump)."""
    return Leadership(engine, clock, settings, holder=name, monotonic=lambda: clock.now().timestamp())


def test_the_first_daemon_leads_and_a_second_stands_by_while_the_lease_is_renewed(
    store_engine: Engine, clock: FakeClock, settings: Settings
) -> None:
    first, second = (daemon_lease(store_engine, clock, settings, n) for n in ("a", "b"))
    assert first.try_acquire() and first.epoch == 1
    for _ in range(10):  # twenty seconds: twice the TTL, renewed all along
        clock.advance(RENEW)
        assert first.renew()
        assert not second.try_acquire()
    assert first.guard() == 1
    assert second.status()["role"] == "standby" and second.status()["leader"] == "a"
    with pytest.raises(LeadershipLost, match="standby"):
        second.guard()


def test_a_standby_takes_over_with_a_new_epoch_once_the_ttl_passes(
    store_engine: Engine, clock: FakeClock, settings: Settings
) -> None:
    first, second = (daemon_lease(store_engine, clock, settings, n) for n in ("a", "b"))
    first.try_acquire()
    clock.advance(TTL - 0.5)  # the leader stopped renewing
    assert not second.try_acquire()
    clock.advance(1)
    assert second.try_acquire()
    assert second.epoch == 2 and second.guard() == 2


def test_a_stopped_leader_refuses_to_act_the_moment_it_wakes_up(
    store_engine: Engine, clock: FakeClock, settings: Settings
) -> None:
    leader = daemon_lease(store_engine, clock, settings, "a")
    leader.try_acquire()
    clock.advance(TTL * 0.8)  # stopped: not one renewal; a standby may take over soon
    with pytest.raises(LeadershipLost, match="last renewed"):
        leader.guard()
    assert leader.is_leader  # nobody took over yet: a renewal that gets through restores it
    assert leader.renew()
    assert leader.guard() == 1


def test_the_plan_of_a_leader_that_lost_its_lease_is_rolled_back_whole(
    store_engine: Engine, clock: FakeClock, settings: Settings, tmp_path: Path
) -> None:
    write_templates(tmp_path)
    for i in range(3):
        add_contact(store_engine, f"c{i}@example.com", now=clock.now())
    # the worst case: the old leader's own clock says no time passed, so its guard lets it act
    old = Leadership(store_engine, clock, settings, holder="old", monotonic=lambda: 0.0)
    old.try_acquire()
    new = Leadership(store_engine, clock, settings, holder="new")
    clock.advance(TTL + 1)
    assert new.try_acquire()
    assert old.guard() == 1
    greetings = campaign()
    shop = workspace(greetings, root=tmp_path)
    with pytest.raises(LeadershipLost, match="now held by epoch 2 by new"):
        fire(store_engine, shop, greetings, None, clock=clock, settings=settings, fence=old.fence)
    assert delivery_states(store_engine) == {}
    stats = fire(store_engine, shop, greetings, None, clock=clock, settings=settings, fence=new.fence)
    assert stats.created == 3 and delivery_states(store_engine) == {"pending": 3}


def test_a_leader_that_finds_its_lease_taken_says_so_once_and_shows_it(
    store_engine: Engine, clock: FakeClock, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    lost: list[str] = []
    old = Leadership(store_engine, clock, settings, holder="old", on_lost=lost.append)
    old.try_acquire()
    clock.advance(TTL + 1)
    Leadership(store_engine, clock, settings, holder="new").try_acquire()
    with caplog.at_level(logging.WARNING, logger="tidings.leadership"):
        assert not old.renew()
        assert not old.renew()  # a second look says nothing more
    lines = [r.getMessage() for r in caplog.records if "lost leadership" in r.getMessage()]
    assert len(lines) == 1 and "another daemon took over (epoch 2 by new)" in lines[0]
    assert len(lost) == 1
    status = old.status()
    assert status["role"] == "standby" and status["lost_leadership"]["epoch"] == 1


def test_a_clean_stop_hands_the_lead_over_at_once(
    store_engine: Engine, clock: FakeClock, settings: Settings
) -> None:
    first, second = (daemon_lease(store_engine, clock, settings, n) for n in ("a", "b"))
    first.try_acquire()
    first.release()
    assert second.try_acquire() and second.epoch == 2


@pytest.mark.postgres
def test_a_leader_whose_connections_are_terminated_keeps_the_lead_and_no_one_else_takes_it(
    pg_engine: Engine, pg_database_url: str, clock: FakeClock, settings: Settings
) -> None:
    leader_engine = create_engine(pg_engine.url.render_as_string(hide_password=False), pool_pre_ping=True)
    try:
        leader = Leadership(leader_engine, clock, settings, holder="a")
        standby = Leadership(pg_engine, clock, settings, holder="b")
        assert leader.try_acquire()
        with pg_engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        assert killed
        clock.advance(RENEW)
        assert leader.renew()  # a new connection renews the same term
        assert not standby.try_acquire()
        assert leader.guard() == 1 and leader.current().holder == "a"  # type: ignore[union-attr]
    finally:
        leader_engine.dispose()


# --- the fire ledger ------------------------------------------------------------------------------


def test_a_fire_is_planning_until_its_plan_commits_and_done_with_it(
    store_engine: Engine, clock: FakeClock
) -> None:
    def no_fence(_conn: object) -> None:
        return None

    record = fire_ledger.begin(
        store_engine, "holiday", "2026-12-01T10:00", epoch=1, now=clock.now(), fence=no_fence
    )
    assert fire_ledger.state_of(store_engine, "holiday", "2026-12-01T10:00") == FireState.planning.value
    assert [u.id for u in fire_ledger.unfinished(store_engine, epoch_below=2)] == [record]
    assert fire_ledger.unfinished(store_engine, epoch_below=1) == []
    with store_engine.begin() as conn:
        fire_ledger.finish(conn, record, now=clock.now())
    assert fire_ledger.state_of(store_engine, "holiday", "2026-12-01T10:00") == FireState.done.value
    again = fire_ledger.begin(
        store_engine, "holiday", "2026-12-01T10:00", epoch=3, now=clock.now(), fence=no_fence
    )
    assert again == record  # one row per occurrence, taken up by the new term
    assert fire_ledger.recorded(store_engine, "holiday", ["2026-12-01T10:00", "2026-12-02T10:00"]) == {
        "2026-12-01T10:00"
    }


def test_a_standby_records_no_fire(store_engine: Engine, clock: FakeClock, settings: Settings) -> None:
    standby = Leadership(store_engine, clock, settings, holder="b")
    with pytest.raises(LeadershipLost):
        fire_ledger.begin(store_engine, "holiday", "x", epoch=1, now=clock.now(), fence=standby.fence)
    assert fire_ledger.state_of(store_engine, "holiday", "x") is None


# --- a daemon taking the lead --------------------------------------------------------------------

CONTACTS = 6
SOON = """\
name: Soon
status: active
timezone: UTC
audience: {segment: everyone}
trigger:
  at: 2030-01-01T10:00
steps:
  - send: {channel: email, template: hello}
"""
EVERY_MINUTE = """\
name: Minutely
status: active
timezone: UTC
audience: {segment: everyone}
trigger:
  schedule: {cron: "* * * * *"}
steps:
  - send: {channel: email, template: hello}
"""


def crashed_leader_lease(engine: Engine) -> None:
    """The lease of a leader that died a minute ago, in epoch 1."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(
            LEASE.insert().values(
                name=LEADER, holder="crashed:1:x", epoch=1, acquired_at=past, renewed_at=past, expires_at=past
            )
        )


def test_a_new_leader_completes_the_fire_its_predecessor_began(store_engine: Engine, tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", {"soon": SOON})
    add_people(store_engine, CONTACTS)
    crashed_leader_lease(store_engine)
    fire_ledger.begin(
        store_engine, "soon", "2030-01-01T10:00", epoch=1, now=datetime.now(UTC), fence=lambda _conn: None
    )
    said: list[str] = []
    url = store_engine.url.render_as_string(hide_password=False)
    daemon = Daemon(
        settings_for(
            root,
            tmp_path / "x.db",
            database_url=url,
            broker_url="memory://",
            leader_ttl_seconds=4,
            leader_renew_seconds=1,
        ),
        store_engine,
        clock=SystemClock(),
        serve_public=False,
        watch=False,
        say=said.append,
    )
    daemon.start()
    try:
        assert daemon.leadership.epoch == 2
        assert any(
            line.startswith("Completed an interrupted fire of soon (2030-01-01T10:00, begun in epoch 1)")
            for line in said
        ), said
        assert sum(delivery_states(store_engine, "soon").values()) == CONTACTS
        assert fire_ledger.state_of(store_engine, "soon", "2030-01-01T10:00") == FireState.done.value
    finally:
        daemon.stop()


def test_a_run_apscheduler_moved_on_is_in_the_ledger_and_the_next_leader_completes_it(
    store_engine: Engine, tmp_path: Path
) -> None:
    root = make_workspace(tmp_path / "ws", {"minutely": EVERY_MINUTE})
    add_people(store_engine, CONTACTS)
    settings = settings_for(
        root,
        tmp_path / "x.db",
        database_url=store_engine.url.render_as_string(hide_password=False),
        broker_url="memory://",
        leader_ttl_seconds=4,
        leader_renew_seconds=1,
    )
    said: list[str] = []

    def daemon() -> Daemon:
        return Daemon(
            settings, store_engine, clock=SystemClock(), serve_public=False, watch=False, say=said.append
        )

    first = daemon()
    first.start()
    try:
        job = first.scheduler.get_job("campaign:minutely:0")
        # what APScheduler's executor does with a due run, before the store moves the job on
        first.note_due(job)
    finally:
        first.stop()  # ... and then the leader is gone before the run planned anything
    (entry,) = fire_ledger.unfinished(store_engine)
    assert entry.campaign_id == "minutely" and entry.epoch == 1
    second = daemon()
    second.start()
    try:
        assert fire_ledger.state_of(store_engine, "minutely", entry.occurrence) == FireState.done.value
        assert any(
            line.startswith(f"Completed an interrupted fire of minutely ({entry.occurrence}") for line in said
        )
        with store_engine.connect() as conn:
            planned = conn.execute(
                text("SELECT count(*) FROM delivery WHERE occurrence = :o"), {"o": entry.occurrence}
            ).scalar()
        assert planned == CONTACTS
    finally:
        second.stop()


def test_a_standby_writes_no_fire_for_a_due_run(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    root = make_workspace(tmp_path / "ws", {"minutely": EVERY_MINUTE})
    settings = settings_for(root, tmp_path / "x.db", broker_url="memory://")
    standby = Daemon(settings, store_engine, clock=SystemClock(), serve_public=False, watch=False, say=print)
    due = standby.scheduler.add_job(  # a real APScheduler job, as the executor is handed it
        jobs.JOB_FUNCTION,
        "interval",
        minutes=1,
        id="campaign:minutely:0",
        kwargs={"campaign_id": "minutely", "occurrence_key": None},
    )
    try:
        with pytest.raises(LeadershipLost):
            standby.note_due(due)
        assert fire_ledger.unfinished(store_engine) == []
    finally:
        standby.dispatcher.close()
        assert standby.publisher is not None
        standby.publisher.close()
