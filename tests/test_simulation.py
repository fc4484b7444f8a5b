"""``tidings simulate`` on the shipped workspace and a small demo shop: its counts are what it wrote.

One simulation (a week of December, 200 contacts) runs once for the module, as a user runs it:
the ``tidings`` command in a subprocess. The tests then compare its JSON report with the files
in the simulation's outbox, with the delivery table of its private copy of the store, and with
the real store (which must not have changed), and open the HTML report in headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_support import TIDINGS
from sqlalchemy import func, select, text
from test_daemon_support import DELIVERY, copy_shipped_workspace, outbox_messages

from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.store import make_engine, upgrade
from engine.store.models import ALL_TABLES, Post, ShopEvent

CONTACTS = 200
SPAN = (
    "2026-12-10",
    "2026-12-16",
)  # shipping reminders (-7d), holiday greetings (Dec 14), daily countdown posts
POST = Post.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def store_fingerprint(database: Path) -> dict[str, Any]:
    """Row counts of every table, and how many shop events are marked processed."""
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        found: dict[str, Any] = {
            model.__tablename__: conn.execute(  # type: ignore[attr-defined]
                select(func.count()).select_from(model.__table__)  # type: ignore[attr-defined]
            ).scalar_one()
            for model in ALL_TABLES
        }
        found["processed_events"] = conn.execute(
            select(func.count()).where(EVENT.c.processed_at.is_not(None))
        ).scalar_one()
        has_jobs = conn.execute(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'apscheduler_jobs'")
        ).scalar()
        found["jobs"] = (
            conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() if has_jobs else None
        )
    engine.dispose()
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = copy_shipped_workspace(tmp_path_factory.mktemp("sim"))
    database = root / "var" / "tidings.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    generate_demo_shop(
        engine, contacts=CONTACTS, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    )
    engine.dispose()
    before = store_fingerprint(database)
    env = {
        **os.environ,
        "TIDINGS_WORKSPACE": str(root),
        "TIDINGS_SECRET_KEY": "k" * 40,
        "TIDINGS_DATABASE_URL": "sqlite:///var/tidings.db",
    }
    report = root / "season.html"
    done = subprocess.run(
        [str(TIDINGS), "simulate", "--from", SPAN[0], "--to", SPAN[1], "--json", "--report", str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        "root": root,
        "database": database,
        "before": before,
        "report": json.loads(done.stdout),
        "html": report,
    }


def test_simulated_counts_match_the_outbox_files_per_campaign(run: dict[str, Any]) -> None:
    report = run["report"]
    outbox = Path(report["outbox_dir"])
    emails = Counter(campaign for campaign, _ in outbox_messages(outbox / "email"))
    posts = Counter(
        json.loads(path.read_text(encoding="utf-8"))["campaign"]
        for path in (outbox / "social").glob("*.json")
    )
    written = emails + posts
    reported = {cid: c["sent"] for cid, c in report["campaigns"].items() if c["sent"]}
    assert reported == dict(written)
    assert {"shipping-deadlines", "holiday-greetings", "shipping-countdown"} <= set(reported)
    assert posts["shipping-countdown"] == 7  # one post a day, Dec 10–16


def test_simulated_counts_match_the_delivery_table_of_the_copy(run: dict[str, Any]) -> None:
    copy = make_engine(f"sqlite:///{run['root'] / 'var' / 'simulation' / 'simulation.db'}")
    with copy.connect() as conn:
        sent: Counter[str] = Counter(
            dict(
                conn.execute(
                    select(DELIVERY.c.campaign_id, func.count())
                    .where(DELIVERY.c.state == "sent")
                    .group_by(DELIVERY.c.campaign_id)
                ).all()
            )
        )
        sent.update(
            dict(
                conn.execute(
                    select(POST.c.campaign_id, func.count())
                    .where(POST.c.state == "sent")
                    .group_by(POST.c.campaign_id)
                ).all()
            )
        )
    copy.dispose()
    reported = {cid: c["sent"] for cid, c in run["report"]["campaigns"].items() if c["sent"]}
    assert reported == dict(sent)
    assert run["report"]["totals"]["sent"] == sum(sent.values())


def test_simulation_leaves_the_real_database_untouched(run: dict[str, Any]) -> None:
    after = store_fingerprint(run["database"])
    assert after == run["before"]
    assert after["delivery"] == 0 and after["enrolment"] == 0 and after["post"] == 0


def test_simulation_writes_no_file_into_the_live_outbox(run: dict[str, Any]) -> None:
    live = run["root"] / "var" / "outbox"
    stray = [p for p in live.rglob("*") if p.is_file() and "simulation" not in p.relative_to(live).parts]
    assert stray == []


def test_season_report_opens_in_chromium_and_shows_the_chart(run: dict[str, Any]) -> None:
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("Debian's chromium is required under CI=true but is not installed", pytrace=False)
        pytest.skip("chromium not installed — apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(run["html"].as_uri())
            chart = page.locator("svg#chart")
            chart.wait_for(state="visible", timeout=10_000)
            bars = chart.locator("rect:has(title)")
            labels = [bars.nth(i).locator("title").text_content() or "" for i in range(bars.count())]
            drawn = [bars.nth(i).bounding_box() for i in range(bars.count())]
            title = page.title()
        finally:
            browser.close()
    assert errors == []
    assert title == "Tidings season 2026-12-10 – 2026-12-16"
    assert all(box is not None and box["width"] > 0 and box["height"] > 0 for box in drawn)
    assert {label.split(" · ")[0] for label in labels} == {
        f"{datetime(2026, 12, day):%a %d %b %Y}" for day in range(10, 17)
    }


def test_the_report_says_when_it_was_run_and_in_which_zone(run: dict[str, Any]) -> None:
    assert datetime.fromisoformat(run["report"]["generated_at"]).tzinfo is not None
    assert run["report"]["timezone"] == "UTC"
    html = run["html"].read_text(encoding="utf-8")
    assert "UTC, the shop&#39;s time zone (TIDINGS_TIMEZONE)" in html
