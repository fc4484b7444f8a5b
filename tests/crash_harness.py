"""Kill a sending process again and again; count what was lost and what went out twice.

Shared by ``tests/test_crash.py`` (a few kills, CI-sized) and ``bench/crash.py`` (5 kills during a
10,000-message send). A real dispatcher process sends an outbox through the real SendGrid client to
the SendGrid-compatible server, which answers a share of requests with 429 or 5xx; the harness
SIGKILLs the process at random moments and starts a new one after the dead one's leases expire.

At each kill it measures the exposure the duplicate bound is about: messages the server accepted
whose ``sent`` state was not yet written (each may be sent again after the restart). The bound
(:mod:`engine.runtime.outcomes`) promises at most ``concurrency`` of them per kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from servers.sendgrid_server import SendGridServer, rate_limited, server_error
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from engine.store import make_engine
from engine.store.models import Consent, Contact, Delivery

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
    import time
    from sqlalchemy import text

    engine = engine_for(settings)
    with Dispatcher(engine, settings, clock, renderer, channel, None,
                    workspace(campaign(), root=settings.workspace_dir)) as d:
        while True:  # until nothing is left: a retry waits out its backoff, then goes again
            d.drain()
            with engine.connect() as conn:
                left = conn.execute(text(
                    "SELECT COUNT(*) FROM delivery WHERE state IN ('pending', 'retry', 'claimed')"
                )).scalar_one()
            if not left:
                break
            time.sleep(0.05)
    """
)


@dataclass
class CrashReport:
    rows: int
    kills: int
    concurrency: int
    exposed_per_kill: list[int] = field(default_factory=list)  # accepted but unrecorded at each kill
    accepted: int = 0
    duplicates: int = 0
    lost: int = 0
    final_states: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "kills": self.kills,
            "concurrency": self.concurrency,
            "exposed_per_kill": self.exposed_per_kill,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "final_states": self.final_states,
            "seconds": round(self.seconds, 1),
        }


def seed_outbox(engine: Engine, rows: int) -> None:
    """``rows`` contacts with consent and one due marketing delivery each."""
    now = datetime.now(UTC)
    contact, consent, delivery = (m.__table__ for m in (Contact, Consent, Delivery))  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            insert(contact),
            [
                {
                    "id": i,
                    "email": f"c{i}@example.com",
                    "first_name": f"C{i}",
                    "tags": [],
                    "attributes": {},
                    "orders_count": 0,
                    "total_spent": 0,
                }
                for i in range(1, rows + 1)
            ],
        )
        conn.execute(
            insert(consent),
            [{"contact_id": i, "channel": "email", "granted_at": now} for i in range(1, rows + 1)],
        )
        conn.execute(
            insert(delivery),
            [
                {
                    "idempotency_key": f"holiday:main:{i}:o",
                    "campaign_id": "holiday",
                    "step_id": "main",
                    "contact_id": i,
                    "template": "greeting",
                    "occurrence": "o",
                    "scheduled_for": now,
                    "state": "pending",
                    "created_at": now,
                    "context": {},
                    "category": "marketing",
                }
                for i in range(1, rows + 1)
            ],
        )


def _sent_ids(url: str) -> set[int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = {int(r[0]) for r in conn.execute(text("SELECT id FROM delivery WHERE state = 'sent'"))}
    engine.dispose()
    return found


def _states(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = {
            state: int(n)
            for state, n in conn.execute(text("SELECT state, COUNT(*) FROM delivery GROUP BY state"))
        }
    engine.dispose()
    return found


def _accepted(server: SendGridServer, since: int = 0) -> Counter[int]:
    """Delivery ids the server accepted (from its ``since``-th acceptance on), with how often."""
    return Counter(
        int(m.body["personalizations"][0]["custom_args"]["delivery_id"]) for m in server.accepted[since:]
    )


def run_crash_scenario(
    workspace: Path,
    database_url: str,
    *,
    rows: int,
    kills: int,
    concurrency: int,
    fault_rate: float = 0.2,
    seed: int = 7,
    timeout: float = 600.0,
) -> CrashReport:
    """Send ``rows`` (already in the outbox at ``database_url``) through processes killed ``kills`` times."""
    from test_dispatch_support import write_templates

    started = time.monotonic()
    write_templates(workspace)
    script = workspace / "sender.py"
    script.write_text(WORKER.format(tests=str(TESTS)))
    report = CrashReport(rows, kills, concurrency)
    chance = random.Random(seed)
    lease = 1.0
    with SendGridServer() as server:
        server.faults.randomly(fault_rate, rate_limited(0), server_error(500), server_error(503), seed=seed)
        env = {
            **os.environ,
            "TIDINGS_WORKSPACE": str(workspace),
            "TIDINGS_DATABASE_URL": database_url,
            "TIDINGS_EMAIL_CHANNEL": "sendgrid",
            "TIDINGS_PUBLIC_URL": "https://shop.example.com",
            "TIDINGS_SENDGRID_API_KEY": server.api_key,
            "TIDINGS_SENDGRID_HOST": server.host,
            "TIDINGS_SECRET_KEY": "c" * 40,
            "TIDINGS_LEASE_SECONDS": str(lease),
            "TIDINGS_CONCURRENCY": str(concurrency),
            "TIDINGS_BATCH_SIZE": "100",
            "TIDINGS_EMAIL_RATE_PER_SECOND": "100000",
            "TIDINGS_RETRY_BASE_SECONDS": "0.05",
            "TIDINGS_RETRY_MAX_SECONDS": "0.2",
            "TIDINGS_MAX_ATTEMPTS": "50",
        }
        for kill in range(kills):
            before = len(server.accepted)
            process = subprocess.Popen([sys.executable, str(script)], env=env, cwd=workspace)
            # Kill somewhere in the middle of what is left to send.
            target = before + max(1, int((rows - before) * chance.uniform(0.1, 0.5) / (kills - kill)))
            deadline = time.monotonic() + timeout
            while len(server.accepted) < target and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            process.wait()
            time.sleep(0.3)  # requests the dead process had sent are answered by now
            # What this process sent whose outcome it never wrote: each may go out again.
            exposed = set(_accepted(server, before)) - _sent_ids(database_url)
            report.exposed_per_kill.append(len(exposed))
            time.sleep(lease)  # the dead process's claims expire
        final = subprocess.run(
            [sys.executable, str(script)], env=env, cwd=workspace, timeout=timeout, check=False
        )
        if final.returncode != 0:
            raise RuntimeError(f"the last sender exited with {final.returncode}")
        accepted = _accepted(server)
    report.accepted = sum(accepted.values())
    report.duplicates = report.accepted - len(accepted)
    report.lost = rows - len(accepted)
    report.final_states = _states(database_url)
    report.seconds = time.monotonic() - started
    return report
