"""Crash recovery: a dispatcher SIGKILLed mid-send loses nothing; it re-sends at most what was in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers.sendgrid_server import SendGridServer, slow
from sqlalchemy import text
from test_dispatch_helpers import add_contact, add_delivery
from test_dispatch_support import write_templates

from engine.store import make_engine, upgrade

pytestmark = pytest.mark.slow

ROWS = 240
TESTS = Path(__file__).resolve().parent

WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_dispatch_support import campaign, workspace
    from engine.clock import SystemClock
    from engine.channels.factory import email_channel_for
    from engine.render.renderer import Renderer
    from engine.runtime.dispatcher import Dispatcher
    from engine.settings import load_settings
    from engine.store import engine_for

    settings = load_settings()
    clock = SystemClock()
    renderer = Renderer(settings, settings.workspace_dir / "templates")
    channel = email_channel_for(settings, now=clock.now)
    with Dispatcher(engine_for(settings), settings, clock, renderer, channel, None,
                    workspace(campaign(), root=settings.workspace_dir)) as d:
        d.drain()
    """
)


def _states(db: Path) -> Counter[str]:
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        found = Counter(
            {
                state: count
                for state, count in conn.execute(text("SELECT state, COUNT(*) FROM delivery GROUP BY state"))
            }
        )
    engine.dispose()
    return found


def test_killed_dispatcher_restarts_without_losing_messages_and_duplicates_at_most_in_flight(
    tmp_path: Path,
) -> None:
    db = tmp_path / "var" / "tidings.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    now = datetime.now(UTC)
    ids = [
        add_delivery(engine, add_contact(engine, f"c{i}@example.com", now=now), now=now) for i in range(ROWS)
    ]
    engine.dispose()
    write_templates(tmp_path)
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS)))

    with SendGridServer() as server:
        server.faults.randomly(
            1.0, slow(0.02), seed=3
        )  # every send takes a little while: a kill lands mid-send
        env = {
            **os.environ,
            "TIDINGS_WORKSPACE": str(tmp_path),
            "TIDINGS_DATABASE_URL": f"sqlite:///{db}",
            "TIDINGS_EMAIL_CHANNEL": "sendgrid",
            "TIDINGS_PUBLIC_URL": "https://shop.example.com",
            "TIDINGS_SENDGRID_API_KEY": server.api_key,
            "TIDINGS_SENDGRID_HOST": server.host,
            "TIDINGS_SECRET_KEY": "c" * 40,
            "TIDINGS_LEASE_SECONDS": "1.5",
            "TIDINGS_CONCURRENCY": "4",
            "TIDINGS_BATCH_SIZE": "24",
            "TIDINGS_EMAIL_RATE_PER_SECOND": "10000",
        }
        first = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while len(server.accepted) < ROWS // 3 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = _states(db)
        in_flight = at_kill["claimed"]
        assert at_kill["sent"] < ROWS, "the kill landed before the work was done"
        time.sleep(1.6)  # the dead worker's leases run out
        second = subprocess.run(
            [sys.executable, str(script)], env=env, cwd=tmp_path, timeout=120, check=False
        )
        assert second.returncode == 0
        accepted = server.accepted

    delivered = Counter(m.body["personalizations"][0]["custom_args"]["delivery_id"] for m in accepted)
    duplicates = sum(delivered.values()) - ROWS
    print(f"\nin flight at the kill: {in_flight} claimed rows; duplicates after restart: {duplicates}")
    assert _states(db) == Counter({"sent": ROWS})
    assert set(delivered) == {str(i) for i in ids}  # nothing lost
    assert 0 <= duplicates <= in_flight
