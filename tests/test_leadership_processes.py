"""Two ``tidings run`` daemons on one PostgreSQL store, as real processes.

One scenario, in order, with a short lease (TTL 3 s, renewed every 0.5 s):

1. ``pg_terminate_backend`` on every connection of the leader: it reconnects and keeps the lead;
   the standby never leads meanwhile (before, the standby took the advisory lock in 1.2 s while
   the old leader kept planning: two leaders).
2. SIGSTOP of the leader: the standby answers a one-click unsubscribe and a signed SendGrid
   webhook at once, and leads within the TTL (before: it waited for ever).
3. A campaign comes due: the new leader fires it, once.
4. SIGCONT: the old leader finds its lease taken, says so in one log line, shows it in
   ``/healthz`` and fires nothing; every message went out exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from cli_support import TIDINGS
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from test_daemon import NOW_CAMPAIGN
from test_daemon_process import free_port
from test_daemon_support import add_people, delivery_states, make_workspace, write_campaign
from test_public_sendgrid_webhook import PUBLIC_B64, sign

from engine.daemon import wait_for
from engine.store.models import Consent, FireRecord
from engine.tokens import UnsubscribeTokens

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TTL, RENEW = 3.0, 0.5
PEOPLE = 8
SECRET = "d" * 40
CONSENT = Consent.__table__  # type: ignore[attr-defined]
FIRES = FireRecord.__table__  # type: ignore[attr-defined]


def call(
    port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, None


def role(port: int) -> str | None:
    status, body = call(port, "/healthz")
    return body.get("role") if status == 200 and isinstance(body, dict) else None


class Run:
    """One ``tidings run`` process with its own public port and log file."""

    def __init__(self, root: Path, database_url: str, name: str) -> None:
        self.port = free_port()
        self.log = root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(
            {
                "TIDINGS_WORKSPACE": str(root),
                "TIDINGS_DATABASE_URL": database_url,
                "TIDINGS_SECRET_KEY": SECRET,
                "TIDINGS_PUBLIC_BIND": f"127.0.0.1:{self.port}",
                "TIDINGS_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                "TIDINGS_LEADER_TTL_SECONDS": str(TTL),
                "TIDINGS_LEADER_RENEW_SECONDS": str(RENEW),
                "TIDINGS_SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC_B64,
                "TIDINGS_CONCURRENCY": "2",
            }
        )
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [TIDINGS, "run", "--no-watch"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=10)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


def terminate_connections_of(engine: Engine, pid: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": f"tidings:{pid}"},
            ).scalar_one()
        )


def outbox_counts(root: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in (root / "var" / "outbox" / "email").glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[str(message["X-Tidings-Delivery"])] += 1
    return found


def test_one_leader_through_a_dropped_connection_and_a_stopped_leader_and_no_fire_lost_or_doubled(
    pg_engine: Engine, pg_database_url: str, tmp_path: Path, runs: list[Run]
) -> None:
    root = make_workspace(tmp_path, {})
    add_people(pg_engine, PEOPLE)
    first = Run(root, pg_database_url, "first")
    runs.append(first)
    assert wait_for(lambda: role(first.port) == "leader", timeout=120), first.output()
    second = Run(root, pg_database_url, "second")
    runs.append(second)
    assert wait_for(lambda: role(second.port) == "standby", timeout=120), second.output()
    assert "Standby:" in second.output()

    # 1. every connection of the leader dropped: it reconnects and keeps the lead, alone
    assert terminate_connections_of(pg_engine, first.process.pid) > 0
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:
        assert role(second.port) == "standby"
        time.sleep(0.2)
    assert role(first.port) == "leader"
    assert "lost leadership" not in first.output()

    # a campaign due at the first minute boundary after the takeover can have happened
    due = (datetime.now(UTC) + timedelta(seconds=TTL + 12)).replace(second=0, microsecond=0) + timedelta(
        minutes=1
    )
    write_campaign(root, "minute", NOW_CAMPAIGN.format(at=due.strftime("%Y-%m-%dT%H:%M")))
    for run in runs:
        run.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "Reloaded the workspace (SIGHUP): jobs 1 added" in first.output(), timeout=30)
    assert wait_for(lambda: "Reloaded the workspace (SIGHUP)" in second.output(), timeout=30)

    # 2. the leader stops: the standby serves the public app at once, and leads within the TTL
    first.process.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    with pg_engine.connect() as conn:
        contact = conn.execute(select(CONSENT.c.contact_id).limit(1)).scalar_one()
    token = UnsubscribeTokens(SECRET).sign(contact, "email", "minute")
    status, _ = call(
        second.port,
        f"/u/{token}",
        b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    events = json.dumps(
        [
            {
                "email": "person2@example.com",
                "event": "open",
                "sg_event_id": "ev-1",
                "timestamp": int(time.time()),
            }
        ]
    ).encode()
    stamp = str(int(time.time()))
    status, body = call(
        second.port,
        "/webhooks/sendgrid",
        events,
        {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": sign(events, stamp),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )
    assert status == 200 and body["stored"] == 1, body
    assert wait_for(lambda: role(second.port) == "leader", timeout=TTL + 10), second.output()
    took_over = time.monotonic() - stopped
    assert took_over <= TTL + 4 * RENEW + 2, f"the standby led {took_over:.1f} s after the leader stopped"
    print(f"the standby led {took_over:.1f} s after the leader stopped (TTL {TTL:g} s)")

    # 3. the campaign comes due: the new leader fires it once
    # (the contact who unsubscribed through the standby is no longer in the audience)
    assert wait_for(lambda: sum(delivery_states(pg_engine, "minute").values()) == PEOPLE - 1, timeout=120)
    assert wait_for(lambda: delivery_states(pg_engine, "minute") == {"sent": PEOPLE - 1}, timeout=60)

    # 4. the old leader wakes up: it stands by, says why once, and fires nothing
    first.process.send_signal(signal.SIGCONT)
    assert wait_for(lambda: role(first.port) == "standby", timeout=30), first.output()
    status, health = call(first.port, "/healthz")
    assert status == 200 and health["leadership"]["lost_leadership"]["epoch"] == 1
    time.sleep(2 * RENEW)  # a renewal attempt or two after waking: still one line
    assert first.output().count("lost leadership") == 1, first.output()
    assert "Fired minute" not in first.output()
    assert second.output().count("Fired minute:") == 1
    with pg_engine.connect() as conn:
        fires = conn.execute(select(FIRES.c.campaign_id, FIRES.c.state, FIRES.c.epoch)).all()
    assert [(f.campaign_id, f.state, f.epoch) for f in fires] == [("minute", "done", 2)]
    codes = [run.stop() for run in runs]
    assert codes == [0, 0], [run.output()[-2000:] for run in runs]
    sent = outbox_counts(root)
    # everyone still subscribed got the campaign exactly once
    assert len(sent) == PEOPLE - 1 and set(sent.values()) == {1}
