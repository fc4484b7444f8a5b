"""The daemon in-process: catch-up after downtime, pause, hot reload and the single-instance lock.

These run the real APScheduler loop (it reads the wall clock), a real SQLite file and the file
outbox; a one-off campaign is due "now" (the current minute) so nothing waits for long.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy.engine import Engine
from test_daemon_support import (
    add_people,
    delivery_states,
    load,
    make_workspace,
    outbox_messages,
    settings_for,
    write_campaign,
)

from engine import scheduler as jobs
from engine.cli import main
from engine.clock import SystemClock
from engine.daemon import Daemon, wait_for
from engine.render import Record
from engine.runtime import controls
from engine.settings import Settings
from engine.workspace.models import ScheduleTrigger

CONTACTS = 12
SHOP = {"name": "Shop", "url": "https://shop.example.com", "postal_address": "1 Main St, Tallinn"}

NOW_CAMPAIGN = """\
name: Now
status: active
timezone: UTC
audience: {{segment: everyone}}
trigger:
  at: {at}
steps:
  - send: {{channel: email, template: hello}}
"""

DAILY = """\
name: Daily
status: active
timezone: UTC
audience: {segment: everyone}
trigger:
  schedule: {cron: "0 10 * * *"}
steps:
  - send: {channel: email, template: hello}
"""


def this_minute() -> str:
    """The current wall-clock minute (UTC): a one-off trigger that is just due."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws", {"now": NOW_CAMPAIGN.format(at=this_minute()), "daily": DAILY})


@pytest.fixture
def settings(root: Path, sqlite_engine: Engine, tmp_path: Path) -> Settings:
    add_people(sqlite_engine, CONTACTS)
    return settings_for(root, tmp_path / "tidings.db")


class Daemons:
    """Daemons started one after another on the same store, as restarts; all stopped at the end."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.said: list[str] = []
        self.running: list[Daemon] = []

    def make(self) -> Daemon:
        daemon = Daemon(
            self.settings,
            self.engine,
            clock=SystemClock(),
            serve_public=False,
            watch=False,
            tick_seconds=0.2,
            say=self.said.append,
        )
        self.running.append(daemon)
        return daemon

    def start(self) -> Daemon:
        daemon = self.make()
        daemon.start()
        return daemon

    def stop_all(self) -> None:
        while self.running:
            daemon = self.running.pop()
            if not daemon.stop_event.is_set():
                daemon.stop()

    def fired(self, campaign_id: str) -> list[str]:
        return [line for line in self.said if line.startswith(f"Fired {campaign_id}:")]


@pytest.fixture
def daemons(settings: Settings, sqlite_engine: Engine) -> Iterator[Daemons]:
    made = Daemons(settings, sqlite_engine)
    yield made
    made.stop_all()


def all_sent(engine: Engine, campaign_id: str, count: int) -> bool:
    return delivery_states(engine, campaign_id) == {"sent": count}


def test_daemon_stopped_over_a_due_time_catches_up_once_on_restart(
    root: Path, settings: Settings, sqlite_engine: Engine, daemons: Daemons
) -> None:
    # The daemon that was running before: it stored the job, due a couple of seconds ahead, and stopped.
    before = jobs.DaemonScheduler(
        timezone="UTC",
        jobstores={"default": SQLAlchemyJobStore(engine=sqlite_engine, tablename="apscheduler_jobs")},
    )
    before.start(paused=True)
    jobs.sync_jobs(
        before, load(root), default_zone=settings.zone, now=datetime.now(UTC), misfire_grace_seconds=3600
    )
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    before.modify_job("campaign:now:0", next_run_time=due)
    before.shutdown(wait=True)
    wait_for(lambda: datetime.now(UTC) > due + timedelta(seconds=0.5), timeout=5)
    assert delivery_states(sqlite_engine) == {}

    daemon = daemons.start()

    assert wait_for(lambda: all_sent(sqlite_engine, "now", CONTACTS), timeout=30), delivery_states(
        sqlite_engine
    )
    assert len(daemons.fired("now")) == 1
    assert daemon.scheduler.get_job("campaign:now:0") is None  # a one-off job is done once it ran
    messages = outbox_messages(settings.outbox_path)
    assert len(messages) == CONTACTS and len(set(messages)) == CONTACTS


def test_restart_after_a_catch_up_sends_nothing_again(
    settings: Settings, sqlite_engine: Engine, daemons: Daemons
) -> None:
    daemon = daemons.start()
    assert wait_for(lambda: all_sent(sqlite_engine, "now", CONTACTS), timeout=30)
    daemon.stop()

    daemons.start()
    # Within the misfire grace the one-off job is added and runs again; the fire ledger says it is
    # done, so it plans nothing (a million-contact plan would take minutes to add nothing).
    assert wait_for(lambda: len(daemons.fired("now")) == 2, timeout=30), daemons.said
    assert daemons.fired("now")[-1].startswith("Fired now: 0 new deliveries (already fired: ")
    assert delivery_states(sqlite_engine, "now") == {"sent": CONTACTS}
    assert len(outbox_messages(settings.outbox_path)) == CONTACTS


def test_paused_campaign_keeps_its_job_and_sends_nothing_until_resumed(
    root: Path, settings: Settings, sqlite_engine: Engine, daemons: Daemons
) -> None:
    controls.pause(sqlite_engine, "now", SystemClock())
    controls.pause(sqlite_engine, "daily", SystemClock())

    daemon = daemons.start()

    assert daemon.scheduler.get_job("campaign:daily:0") is not None
    assert wait_for(lambda: sum(delivery_states(sqlite_engine, "now").values()) == CONTACTS, timeout=30)
    daemon.tick()
    assert delivery_states(sqlite_engine, "now") == {"pending": CONTACTS}
    assert outbox_messages(settings.outbox_path) == []

    controls.resume(sqlite_engine, "now", SystemClock())
    assert wait_for(lambda: all_sent(sqlite_engine, "now", CONTACTS), timeout=30)


def test_invalid_edit_is_reported_and_the_old_version_keeps_running(root: Path, daemons: Daemons) -> None:
    daemon = daemons.start()
    before = daemon.scheduler.get_job("campaign:daily:0")
    write_campaign(
        root, "daily", DAILY.replace('cron: "0 10 * * *"', 'cron: "0 11 * * *"').replace("steps:", "stepz:")
    )

    assert daemon.reload("test edit") is False

    assert any(line.startswith("Reload rejected: ") and "daily.yaml" in line for line in daemons.said)
    assert daemon.status.rejected_reloads == 1
    after = daemon.scheduler.get_job("campaign:daily:0")
    assert after.next_run_time == before.next_run_time
    spec = daemon.workspace.campaigns["daily"].trigger.spec
    assert isinstance(spec, ScheduleTrigger) and spec.cron == "0 10 * * *"


def test_valid_edit_is_applied_on_reload_and_moves_the_job(root: Path, daemons: Daemons) -> None:
    daemon = daemons.start()
    write_campaign(root, "daily", DAILY.replace('cron: "0 10 * * *"', 'cron: "0 11 * * *"'))

    assert wait_for(lambda: all_sent(daemon.engine, "now", CONTACTS), timeout=30)
    assert daemon.reload("test edit") is True

    # The one-off that already ran is not added (and fired) again; the edited job moves.
    assert daemons.said[-1] == "Reloaded the workspace (test edit): jobs 1 rescheduled"
    assert daemon.scheduler.get_job("campaign:daily:0").next_run_time.astimezone(UTC).hour == 11


def test_a_template_over_the_render_budget_keeps_its_last_good_version_on_reload(
    root: Path, daemons: Daemons
) -> None:
    daemon = daemons.make()
    assert daemon.reload("start") is True
    hello = root / "templates" / "hello" / "email.mjml"
    hello.write_text(
        hello.read_text().replace(
            "Hello {{ contact.first_name }}.",
            "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        )
    )

    assert daemon.reload("test edit") is True

    [why] = [line for line in daemons.said if line.startswith("Reload: kept the last good version")]
    assert f"template 'hello': {hello}:" in why and "loop iterations" in why
    assert daemon.status.last_problems == [why.removeprefix("Reload: ")]
    contact = Record({"id": 1, "email": "ada@example.com", "first_name": "Ada", "locale": "en"})
    sent = daemon.dispatcher.renderer.render_email("hello", {"contact": contact, "shop": Record(SHOP)})
    assert "Hello Ada." in sent.text


def test_second_run_on_the_same_sqlite_database_refuses_to_start(
    root: Path,
    settings: Settings,
    daemons: Daemons,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemons.start()
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(root))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "s" * 40)

    code = main(["run", "--no-public", "--no-watch"])

    captured = capsys.readouterr()
    # (stderr also carries the first daemon's log lines: it runs in this process)
    errors = [line for line in captured.err.splitlines() if line.startswith("tidings:")]
    assert code == 2
    assert len(errors) == 1 and "Traceback" not in captured.err
    assert (
        errors[0].startswith("tidings: another `tidings run` (pid ") and "is already running on" in errors[0]
    )
    assert "Scheduled:" not in captured.out and "Stopped." not in captured.out


def test_with_a_broker_the_daemon_hands_due_messages_to_workers_instead_of_sending(
    settings: Settings, sqlite_engine: Engine
) -> None:
    import uuid

    from engine.fanout import DISPATCH_TASK, create_app

    queue = f"daemon-{uuid.uuid4().hex[:10]}"
    brokered = settings.model_copy(update={"broker_url": "memory://", "broker_queue": queue, "batch_size": 5})
    daemon = Daemon(brokered, sqlite_engine, serve_public=False, watch=False, say=lambda _line: None)
    daemon.start()
    try:
        daemon.fire_campaign("now", None)
        daemon.tick()
    finally:
        daemon.stop()
    # Nothing went out from the daemon itself: the rows wait for a worker, and the broker holds them.
    assert delivery_states(sqlite_engine, "now") == {"pending": CONTACTS}
    assert outbox_messages(settings.outbox_path) == []
    app = create_app(brokered)
    ids: list[int] = []
    with app.connection_for_read() as conn:
        while (message := conn.default_channel.basic_get(queue, no_ack=True)) is not None:
            assert message.headers["task"] == DISPATCH_TASK
            ids.extend(message.decode()[1]["ids"])
    app.close()
    assert len(ids) == len(set(ids)) == CONTACTS


def test_the_shipped_templates_render_their_labels_from_the_reviewed_copy_at_start_and_after_a_reload(
    tmp_path: Path, sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from test_daemon_support import copy_shipped_workspace, settings_for

    from engine.render import load_sample, sample_context

    root = copy_shipped_workspace(tmp_path / "shop")
    settings = settings_for(root, tmp_path / "tidings.db")
    said: list[str] = []
    with caplog.at_level("WARNING", logger="tidings.daemon"):
        daemon = Daemon(
            settings, sqlite_engine, clock=SystemClock(), serve_public=False, watch=False, say=said.append
        )

    def reminder_text() -> str:
        renderer = daemon.dispatcher.renderer
        sample = load_sample(root / "templates" / "shipping-reminder" / "sample.yaml", settings)
        return renderer.render_email("shipping-reminder", sample_context(sample, settings), locale="et").text

    # Every shipped template passes its review (none is held back for want of its labels).
    assert [r.getMessage() for r in caplog.records if "no version that renders" in r.getMessage()] == []
    assert "Tarneviis: Tavatarne (" in reminder_text()
    assert daemon.reload("test") is True
    assert not [line for line in said if line.startswith("Reload:")]
    assert "Tarneviis: Tavatarne (" in reminder_text()  # the "method" label, in Estonian, after the reload
