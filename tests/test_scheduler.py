"""The APScheduler job store kept in step with the workspace, and what its triggers fire across DST changes.

APScheduler's loop reads the wall clock, so these tests drive :func:`engine.scheduler.sync_jobs`
on a paused scheduler with the daemon's persistent SQLite job store, and the triggers
themselves (``get_next_fire_time`` is pure) on a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import select
from sqlalchemy.engine import Engine
from test_daemon_support import DELIVERY, add_people, load, make_workspace, settings_for, write_campaign

from engine import scheduler as jobs
from engine.clock import FakeClock
from engine.runtime.fire import fire
from engine.runtime.occurrences import campaign_triggers, due_occurrences

NOW = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
ZONE = ZoneInfo("UTC")

DAILY = """\
name: Daily
status: active
timezone: {zone}
audience: {{segment: everyone}}
trigger:
  schedule: {{cron: "{cron}"}}
steps:
  - send: {{channel: email, template: hello}}
"""

ONCE = """\
name: Once
status: active
timezone: Europe/Tallinn
audience: {segment: everyone}
trigger:
  at: 2026-10-27T10:00
steps:
  - send: {channel: email, template: hello}
"""

CUTOFF = """\
name: Order by
status: active
timezone: Europe/Tallinn
audience: {segment: everyone}
trigger:
  calendar: {date: shipping_cutoff, offsets: [-1d], at: "09:00", local_time: true}
steps:
  - send: {channel: email, template: hello}
"""


def daily(cron: str = "0 10 * * *", zone: str = "UTC") -> str:
    return DAILY.format(cron=cron, zone=zone)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws", {"daily": daily(), "once": ONCE, "cutoff": CUTOFF})


class Schedulers:
    """Paused schedulers on one persistent job store: each ``start()`` is a daemon (re)start."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.current: jobs.DaemonScheduler | None = None

    def start(self) -> jobs.DaemonScheduler:
        self.stop()
        scheduler = jobs.DaemonScheduler(
            timezone="UTC", jobstores={"default": SQLAlchemyJobStore(engine=self.engine)}
        )
        scheduler.start(paused=True)
        self.current = scheduler
        return scheduler

    def stop(self) -> None:
        if self.current is not None:
            self.current.shutdown(wait=False)
            self.current = None


@pytest.fixture
def schedulers(sqlite_engine: Engine) -> Iterator[Schedulers]:
    made = Schedulers(sqlite_engine)
    yield made
    made.stop()


def sync(scheduler: jobs.DaemonScheduler, root: Path) -> jobs.SyncReport:
    return jobs.sync_jobs(scheduler, load(root), default_zone=ZONE, now=NOW, misfire_grace_seconds=3600)


def test_first_start_adds_one_job_per_time_trigger(root: Path, schedulers: Schedulers) -> None:
    report = sync(schedulers.start(), root)
    assert sorted(report.added) == ["campaign:cutoff:0", "campaign:daily:0", "campaign:once:0"]
    assert not report.rescheduled and not report.removed


def test_unchanged_campaign_keeps_its_next_run_time_across_restarts(
    root: Path, schedulers: Schedulers
) -> None:
    scheduler = schedulers.start()
    sync(scheduler, root)
    # The daemon went down before this run: the stored next run time is now in the past.
    missed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    scheduler.modify_job("campaign:daily:0", next_run_time=missed)

    report = sync(schedulers.start(), root)

    assert "campaign:daily:0" in report.kept and not report
    job = schedulers.current.get_job("campaign:daily:0")  # type: ignore[union-attr]
    assert job.next_run_time == missed  # not recomputed from now: the missed run is caught up


def test_editing_a_campaign_schedule_moves_its_job(root: Path, schedulers: Schedulers) -> None:
    sync(schedulers.start(), root)
    before = schedulers.current.get_job("campaign:daily:0")  # type: ignore[union-attr]
    write_campaign(root, "daily", daily("0 11 * * *"))

    report = sync(schedulers.start(), root)

    assert report.rescheduled == ["campaign:daily:0"]
    after = schedulers.current.get_job("campaign:daily:0")  # type: ignore[union-attr]
    assert after.kwargs["definition_hash"] != before.kwargs["definition_hash"]
    assert after.next_run_time.astimezone(UTC).hour == 11
    assert before.next_run_time.astimezone(UTC).hour == 10


def test_a_comment_or_key_order_change_does_not_reschedule(root: Path, schedulers: Schedulers) -> None:
    sync(schedulers.start(), root)
    write_campaign(
        root, "daily", "# reworded\n" + daily().replace("status: active\n", "") + "status: active\n"
    )

    report = sync(schedulers.start(), root)

    assert not report and "campaign:daily:0" in report.kept


def test_removing_a_campaign_removes_its_job(root: Path, schedulers: Schedulers) -> None:
    sync(schedulers.start(), root)
    (root / "campaigns" / "once.yaml").unlink()

    report = sync(schedulers.start(), root)

    assert report.removed == ["campaign:once:0"]
    assert schedulers.current.get_job("campaign:once:0") is None  # type: ignore[union-attr]


def test_setting_a_campaign_to_draft_removes_its_job(root: Path, schedulers: Schedulers) -> None:
    sync(schedulers.start(), root)
    write_campaign(root, "once", ONCE.replace("status: active", "status: draft"))

    report = sync(schedulers.start(), root)

    assert report.removed == ["campaign:once:0"]


def test_one_off_job_fires_at_its_wall_time_in_the_campaign_zone(root: Path, schedulers: Schedulers) -> None:
    sync(schedulers.start(), root)
    job = schedulers.current.get_job("campaign:once:0")  # type: ignore[union-attr]
    # 2026-10-27 10:00 in Tallinn is after the October change: UTC+2, not UTC+3.
    assert job.next_run_time == datetime(2026, 10, 27, 8, 0, tzinfo=UTC)
    assert job.kwargs["occurrence_key"] == "2026-10-27T10:00"


def test_per_contact_cutoff_job_fires_before_the_earliest_contact_is_due(root: Path) -> None:
    campaign = load(root).campaigns["cutoff"]
    (only,) = campaign_triggers(campaign, load(root).schedules, years=range(2026, 2027), default_zone=ZONE)
    first = only.trigger.get_next_fire_time(None, NOW)
    assert first is not None
    # The first cutoff day minus one is 2026-10-25; 09:00 there comes first on UTC+14.
    assert first == datetime(2026, 10, 24, 19, 0, tzinfo=UTC)
    assert only.occurrence(first).key == "shipping_cutoff-1d@2026-11-06"  # the season's deliver_before


def test_daily_0130_job_on_the_autumn_change_sends_once(tmp_path: Path, sqlite_engine: Engine) -> None:
    root = make_workspace(tmp_path / "ws", {"nightly": daily("30 1 * * *", "America/New_York")})
    workspace = load(root)
    campaign = workspace.campaigns["nightly"]
    contacts = add_people(sqlite_engine, 6)
    settings = settings_for(root, tmp_path / "tidings.db")
    (trigger,) = campaign_triggers(campaign, workspace.schedules, years=range(2026, 2027), default_zone=ZONE)

    # The wall clock shows 01:30 twice on 2026-11-01 (EDT, then EST); cron fires at the first one
    # only, and next at 01:30 on the 2nd (APScheduler's own CronTrigger fired at both).
    fires: list[datetime] = []
    previous, now = None, datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    while len(fires) < 2:
        moment = trigger.trigger.get_next_fire_time(previous, now)
        assert moment is not None
        fires.append(moment)
        previous = now = moment
    assert [f.astimezone(UTC) for f in fires] == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]

    # A restart that fires the same occurrence again (or an older scheduler's double fire) adds nothing.
    clock = FakeClock(fires[0])
    created = []
    for moment in (fires[0], fires[0] + timedelta(hours=1)):
        clock.set(moment)
        stats = fire(
            sqlite_engine, workspace, campaign, trigger.occurrence(fires[0]), clock=clock, settings=settings
        )
        created.append(stats.created)

    assert created == [len(contacts), 0]
    with sqlite_engine.connect() as conn:
        rows = list(
            conn.execute(select(DELIVERY.c.contact_id, DELIVERY.c.scheduled_for, DELIVERY.c.occurrence))
        )
    assert sorted(r.contact_id for r in rows) == contacts
    assert {r.occurrence for r in rows} == {"2026-11-01T01:30"}
    local = {r.scheduled_for.astimezone(ZoneInfo("America/New_York")) for r in rows}
    assert {(m.hour, m.minute) for m in local} == {(1, 30)}


def test_daily_0230_job_on_the_spring_change_fires_once_at_0330(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", {"nightly": daily("30 2 * * *", "America/New_York")})
    workspace = load(root)
    since = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    found = due_occurrences(
        workspace.campaigns["nightly"],
        workspace.schedules,
        since,
        since + timedelta(days=2),
        default_zone=ZONE,
    )
    assert [o.key for o in found] == ["2026-03-08T02:30", "2026-03-09T02:30"]
    # 02:30 does not exist on 2026-03-08 in New York; the job runs when the clock shows 03:30 EDT.
    assert found[0].fire_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_shutting_down_does_not_lose_a_run_that_is_due(root: Path, schedulers: Schedulers) -> None:
    scheduler = schedulers.start()
    sync(scheduler, root)
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    scheduler.modify_job("campaign:daily:0", next_run_time=due)
    scheduler.modify_job("campaign:once:0", next_run_time=due)

    scheduler.shutdown(wait=True)
    schedulers.current = None

    restarted = schedulers.start()
    assert restarted.get_job("campaign:once:0").next_run_time == due  # type: ignore[union-attr]
    assert restarted.get_job("campaign:daily:0").next_run_time == due  # type: ignore[union-attr]
