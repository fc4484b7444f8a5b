"""``tidings worker``: take render-and-send batches from the Celery broker (scale-out).

Thin: :mod:`engine.fanout` holds the app, the task and the per-process runtime; this module
checks that everything a worker needs answers (broker, database at the current schema, a
valid workspace), says so in one line when not (exit 2), and runs a Celery worker in this
process until SIGTERM/SIGINT (a warm shutdown: the batches in progress finish and are recorded).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import typer

from engine.cli.context import STATE
from engine.errors import TidingsError

#: Batches in progress at once per worker process; each sends up to TIDINGS_CONCURRENCY at once.
DEFAULT_BATCHES = 2


class SchemaOutOfDate(TidingsError):
    """Workers never migrate (several may start at once): the daemon or `tidings db upgrade` does."""


def _queues(option: str | None, default: str) -> list[str]:
    """The queues named, each with its recovery queue (what the sweeper re-publishes goes there)."""
    from engine.fanout.celery_app import RECOVERY_SUFFIX, recovery_queue

    names = [name.strip() for name in (option or default).split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("name at least one queue", param_hint="--queues")
    extra = [recovery_queue(name) for name in names if not name.endswith(RECOVERY_SUFFIX)]
    return list(dict.fromkeys([*names, *extra]))


def _check_schema() -> None:
    from engine.store.migrate import current_revision, head_revision

    engine = STATE.engine()
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'nothing'}, this worker needs {head}: "
            "run `tidings db upgrade` (or start `tidings run`) first"
        )


def worker_cmd(
    concurrency: int = typer.Option(
        DEFAULT_BATCHES,
        "--concurrency",
        "-c",
        min=1,
        max=64,
        help="Batches in progress at once (each sends up to TIDINGS_CONCURRENCY messages at once).",
    ),
    queues: str | None = typer.Option(
        None,
        "--queues",
        "-Q",
        help="Comma-separated broker queues to take batches from (default: TIDINGS_BROKER_QUEUE), "
        "each with its .recovery queue.",
    ),
) -> None:
    """Send outbox batches handed out through TIDINGS_BROKER_URL (run any number, on any host)."""
    from engine.fanout import check_broker, create_app
    from engine.fanout.celery_app import safe_broker_url
    from engine.fanout.worker_runtime import WorkerRuntime, load_valid_workspace

    settings = STATE.sending_settings()
    selected = _queues(queues, settings.broker_queue)
    probe = create_app(settings)  # raises BrokerNotConfigured without TIDINGS_BROKER_URL
    try:
        check_broker(probe)
    finally:
        probe.close()
    engine = STATE.engine()
    _check_schema()
    workspace = load_valid_workspace(settings)
    runtime = WorkerRuntime(settings, engine, workspace, clock=STATE.clock)
    app = create_app(settings, runtime=runtime)
    name = f"tidings-{os.getpid()}@{socket.gethostname()}"
    say = STATE.out.print
    say(
        f"Tidings worker {name} — queue {', '.join(selected)} · {concurrency} batch(es) at a time × "
        f"{settings.concurrency} sends · broker {safe_broker_url(settings.broker_url or '')} · "
        f"database {engine.url.render_as_string(hide_password=True)}",
        markup=False,
    )
    worker: Any = None

    def ready(consumer: Any) -> None:
        worker.on_consumer_ready(consumer)
        say(f"Ready: waiting for batches on {', '.join(selected)}.", markup=False)

    try:
        worker = app.Worker(
            hostname=name,
            queues=selected,
            concurrency=concurrency,
            pool="threads",
            loglevel=settings.log_level.upper(),
            quiet=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=ready,
        )
        worker.start()
    finally:
        runtime.close()
        app.close()
    code = int(worker.exitcode or 0) if worker is not None else 0
    say(f"Worker {name} stopped.", markup=False)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
