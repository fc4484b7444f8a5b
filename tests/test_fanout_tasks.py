"""The dispatch task and the worker's runtime, run in this process against a SendGrid-compatible server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from servers.sendgrid_server import SendGridServer
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, delivery_rows
from test_fanout_support import SECRET, received_by_delivery, write_workspace

from engine.clock import FakeClock
from engine.fanout import DISPATCH_TASK, create_app
from engine.fanout.worker_runtime import WorkerRuntime, load_valid_workspace
from engine.settings import Settings


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, sendgrid: SendGridServer) -> Settings:
    write_workspace(tmp_path)
    return Settings(
        workspace=tmp_path,
        broker_url="memory://",
        broker_queue="tasks-test",
        email_channel="sendgrid",
        public_url="https://shop.example.com",
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_host=sendgrid.host,
        sendgrid_timeout_seconds=5,
        secret_key=SECRET,
        concurrency=2,
        email_rate_per_second=10_000,
    )


@pytest.fixture
def runtime(settings: Settings, sqlite_engine: Engine, clock: FakeClock) -> Iterator[WorkerRuntime]:
    workspace = load_valid_workspace(settings)
    runtime = WorkerRuntime(settings, sqlite_engine, workspace, clock=clock, check_every=0)
    yield runtime
    runtime.close()


@pytest.fixture
def app(settings: Settings, runtime: WorkerRuntime) -> Iterator[Celery]:
    app = create_app(settings, runtime=runtime)
    yield app
    app.close()


def run_task(app: Celery, **kwargs: Any) -> Any:
    return app.tasks[DISPATCH_TASK].apply(kwargs=kwargs)


def test_a_batch_sends_the_rows_it_names_once_and_leaves_the_others(
    app: Celery, sqlite_engine: Engine, clock: FakeClock, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    a, b, c = (
        add_delivery(sqlite_engine, add_contact(sqlite_engine, f"{name}@example.com", now=now), now=now)
        for name in ("ana", "ben", "cleo")
    )
    result = run_task(app, ids=[a, c])
    assert result.successful()
    assert result.result["sent"] == 2
    assert run_task(app, ids=[a, c]).result["claimed"] == 0  # a redelivered message claims nothing
    assert received_by_delivery(sendgrid) == {str(a): 1, str(c): 1}
    rows = delivery_rows(sqlite_engine)
    assert (rows[a].state, rows[b].state, rows[c].state) == ("sent", "pending", "sent")


def test_a_claim_up_to_n_batch_takes_the_oldest_due_rows(
    app: Celery, sqlite_engine: Engine, clock: FakeClock, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    ids = [
        add_delivery(sqlite_engine, add_contact(sqlite_engine, f"c{i}@example.com", now=now), now=now)
        for i in range(3)
    ]
    assert run_task(app, limit=2).result["sent"] == 2
    assert sorted(received_by_delivery(sendgrid)) == sorted(str(i) for i in ids[:2])


def test_a_task_with_malformed_arguments_fails_without_sending(
    app: Celery, sqlite_engine: Engine, clock: FakeClock, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    row = add_delivery(sqlite_engine, add_contact(sqlite_engine, "a@example.com", now=now), now=now)
    assert run_task(app, ids=f"{row}").failed()
    assert run_task(app, limit=-1).failed()
    assert sendgrid.accepted == []
    assert delivery_rows(sqlite_engine)[row].state == "pending"


def test_worker_sends_an_edited_template_without_a_restart(
    runtime: WorkerRuntime,
    settings: Settings,
    sqlite_engine: Engine,
    clock: FakeClock,
    sendgrid: SendGridServer,
) -> None:
    now = clock.now()
    first = add_delivery(sqlite_engine, add_contact(sqlite_engine, "a@example.com", now=now), now=now)
    second = add_delivery(sqlite_engine, add_contact(sqlite_engine, "b@example.com", now=now), now=now)
    runtime.dispatcher().run_once(ids=[first])
    template = settings.workspace_dir / "templates" / "greeting" / "email.mjml"
    template.write_text(template.read_text().replace("Happy holidays", "Season's greetings"))
    stat = template.stat()
    os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    runtime.dispatcher().run_once(ids=[second])
    subjects = {m.body["headers"]["X-Tidings-Delivery"]: m.body["subject"] for m in sendgrid.accepted}
    assert subjects[str(first)].startswith("Happy holidays")
    assert subjects[str(second)].startswith("Season's greetings")


def test_worker_keeps_the_last_good_workspace_when_an_edit_does_not_validate(
    runtime: WorkerRuntime,
    settings: Settings,
    sqlite_engine: Engine,
    clock: FakeClock,
    sendgrid: SendGridServer,
) -> None:
    now = clock.now()
    row = add_delivery(sqlite_engine, add_contact(sqlite_engine, "a@example.com", now=now), now=now)
    runtime.dispatcher()
    (settings.workspace_dir / "campaigns" / "holiday.yaml").write_text("name: [unclosed\n")
    stats = runtime.dispatcher().run_once(ids=[row])
    assert stats.sent == 1
    assert "holiday" in runtime.workspace.campaigns


def test_worker_keeps_the_last_good_template_when_an_edit_breaks_the_render_budget(
    runtime: WorkerRuntime,
    settings: Settings,
    sqlite_engine: Engine,
    clock: FakeClock,
    sendgrid: SendGridServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = clock.now()
    row = add_delivery(sqlite_engine, add_contact(sqlite_engine, "a@example.com", now=now), now=now)
    runtime.dispatcher()
    template = settings.workspace_dir / "templates" / "greeting" / "email.mjml"
    template.write_text(
        template.read_text().replace(
            "Happy holidays",
            "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        )
    )
    stat = template.stat()
    os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    with caplog.at_level("WARNING", logger="tidings.worker"):
        stats = runtime.dispatcher().run_once(ids=[row])

    assert (stats.sent, stats.failed) == (1, 0)
    [sent] = sendgrid.accepted
    assert sent.body["subject"].startswith("Happy holidays")
    [why] = [r.getMessage() for r in caplog.records if "kept the last good version" in r.getMessage()]
    assert why.startswith("workspace changed: kept the last good version of template 'greeting'")
    assert "loop iterations" in why
