"""``tidings run`` as a real process: health, a campaign triggered mid-run, SIGTERM mid-send, restart.

The workspace is a copy of the shipped one (holiday greetings without its quiet hours, since
this test runs on the wall clock at whatever hour it is), the store a 200-contact demo shop.
The email rate is lowered so that the send takes seconds and SIGTERM lands in the middle of it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from cli_support import TIDINGS
from sqlalchemy import select
from test_daemon_support import DELIVERY, copy_shipped_workspace

from engine.daemon import wait_for
from engine.store import make_engine

CAMPAIGN = "holiday-greetings"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


class Tidings:
    """``tidings`` commands against one workspace; ``run`` processes are kept to be stopped."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.env = {
            **os.environ,
            "TIDINGS_WORKSPACE": str(root),
            "TIDINGS_DATABASE_URL": "sqlite:///var/tidings.db",
            "TIDINGS_SECRET_KEY": "d" * 40,
            "TIDINGS_PUBLIC_BIND": f"127.0.0.1:{port}",
            "TIDINGS_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TIDINGS_EMAIL_RATE_PER_SECOND": "10",
            "TIDINGS_CONCURRENCY": "2",
        }
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.runs = 0

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TIDINGS, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        log = (self.root / f"run-{self.runs}.log").open("wb")
        daemon = subprocess.Popen(
            [TIDINGS, "run", "--no-watch"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.daemons.append(daemon)
        return daemon

    def output(self, run: int) -> str:
        return (self.root / f"run-{run}.log").read_text(encoding="utf-8", errors="replace")

    def stop_all(self) -> None:
        for daemon in self.daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()


@pytest.fixture
def tidings(tmp_path: Path) -> Iterator[Tidings]:
    root = copy_shipped_workspace(tmp_path)
    greetings = root / "campaigns" / f"{CAMPAIGN}.yaml"
    text = greetings.read_text(encoding="utf-8")
    # No limits, and no A/B test (it would hold 80% of the send for 4 hours): one send, interrupted.
    text = text.replace("      test: {share: 20%, decide_after: 4h, by: clicks}\n", "")
    assert "test:" not in text
    greetings.write_text(text[: text.index("limits:")], encoding="utf-8")
    made = Tidings(root, free_port())
    loaded = made.command("demo-data", "--contacts", "200", "--season", "2026")
    assert loaded.returncode == 0, loaded.stderr
    yield made
    made.stop_all()


def states(root: Path) -> Counter[str]:
    engine = make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(DELIVERY.c.state).where(DELIVERY.c.campaign_id == CAMPAIGN)).all()
    finally:
        engine.dispose()
    return Counter(state for (state,) in rows)


def test_daemon_survives_sigterm_mid_send_and_completes_the_outbox_on_restart(tidings: Tidings) -> None:
    root = tidings.root
    first = tidings.start()
    assert wait_for(lambda: health(tidings.port)[0] == 200, timeout=90), tidings.output(1)
    status, body = health(tidings.port)
    assert body["scheduler"] == "ok" and body["alive"] is True and body["database"] == "ok"
    banner = tidings.output(1)
    assert "Scheduled:" in banner and "Next up:" in banner
    # The order-by reminders' first send is a real contact's, in that contact's zone (not UTC+14).
    assert re.search(
        r"shipping-deadlines +from 2026-12-\d\d 09:00 \w+ \(\w+/\w+\) · [\d,]+ contacts", banner
    ), banner
    # The X countdown is a post, in the schedule table and in "Next up" alike, never "1 contact".
    countdown = [line for line in banner.splitlines() if "shipping-countdown " in line and " · " in line]
    assert countdown and all(line.endswith(" · a post") for line in countdown), banner
    first.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "Reloaded the workspace (SIGHUP)" in tidings.output(1), timeout=30)
    reloaded = re.search(r"Reloaded the workspace \(SIGHUP\): jobs (.*)", tidings.output(1))
    assert reloaded is not None and re.fullmatch(r"\d+ kept", reloaded.group(1).strip())  # nothing moved

    fired = tidings.command("trigger", CAMPAIGN, "--now", "--json")
    assert fired.returncode == 0, fired.stderr
    planned = json.loads(fired.stdout)["created"]
    assert planned > 50

    emails = root / "var" / "outbox" / "email"
    assert wait_for(lambda: emails.exists() and len(list(emails.glob("*.eml"))) >= 10, timeout=60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    stopped = states(root)
    assert "Stopped." in tidings.output(1)
    assert stopped["claimed"] == 0  # claimed but unsent rows went back to the queue
    assert 0 < stopped["sent"] < planned  # it really stopped in the middle of the send

    second = tidings.start()
    assert wait_for(lambda: states(root) == {"sent": planned}, timeout=120), states(root)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0

    with make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}").connect() as conn:
        rows = conn.execute(
            select(DELIVERY.c.id, DELIVERY.c.contact_id, DELIVERY.c.occurrence).where(
                DELIVERY.c.campaign_id == CAMPAIGN
            )
        ).all()
    assert len({r.contact_id for r in rows}) == len(rows) == planned
    assert len({r.occurrence for r in rows}) == 1
    files = sorted(emails.glob("*.eml"))
    messages = [message_from_bytes(path.read_bytes(), policy=policy.default) for path in files]
    assert len(files) == planned
    assert {str(m["X-Tidings-Delivery"]) for m in messages} == {str(r.id) for r in rows}
    assert len({str(m["To"]) for m in messages}) == planned  # no contact got two
