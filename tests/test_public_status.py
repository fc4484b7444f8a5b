"""``GET /`` on the public app: what runs, what is next (from the planner's own occurrences), links."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from test_daemon_support import copy_shipped_workspace

from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.runtime.controls import pause, resume
from engine.runtime.dry_run import dry_run
from engine.runtime.occurrences import due_occurrences
from engine.settings import Settings, load_settings
from engine.web.public import create_public_app
from engine.web.status import workspace_next_up
from engine.workspace.loader import Workspace, load_workspace

NOW = datetime(2026, 12, 13, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = copy_shipped_workspace(tmp_path_factory.mktemp("status"))
    url = f"sqlite:///{root / 'var' / 'tidings.db'}"
    from engine.store import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    generate_demo_shop(engine, contacts=150, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()
    return root, url


@pytest.fixture
def parts(shop: tuple[Path, str]) -> Iterator[tuple[Settings, Engine, Workspace]]:
    from engine.store import make_engine

    root, url = shop
    settings = load_settings(workspace=root, database_url=url, secret_key="s" * 40, timezone="Europe/Tallinn")
    engine = make_engine(url)
    workspace = load_workspace(root, default_timezone=settings.timezone).workspace
    yield settings, engine, workspace
    engine.dispose()


def _client(settings: Settings, engine: Engine, **options: object) -> TestClient:
    return TestClient(create_public_app(settings, engine, FakeClock(NOW), **options))  # type: ignore[arg-type]


def test_status_page_lists_next_up_with_audience_and_local_time(
    parts: tuple[Settings, Engine, Workspace],
) -> None:
    settings, engine, workspace = parts
    provider = workspace_next_up(engine, lambda: workspace, settings)

    with _client(settings, engine, next_up=provider, workspace=lambda: workspace) as client:
        page = client.get("/")
        data = client.get("/api/status").json()

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    greeting = next(m for m in data["next_up"] if m["campaign"] == "holiday-greetings")
    # The planner's own count for that occurrence, and its first instant, in the shop's zone.
    campaign = workspace.campaigns["holiday-greetings"]
    (occurrence,) = due_occurrences(
        campaign, workspace.schedules, NOW, NOW + timedelta(days=2), default_zone=settings.zone
    )
    with engine.connect() as conn:
        reach = dry_run(conn, workspace, campaign, occurrence, settings=settings, now=NOW).reach
    assert greeting["audience"] == reach > 0
    assert greeting["when"].startswith("Mon 14 Dec 2026 ")
    assert f">{reach:,}</td>" in page.text and "Holiday greetings 2026" in page.text
    assert [m["at"] for m in data["next_up"]] == sorted(m["at"] for m in data["next_up"])
    assert "Europe/Tallinn, the shop&#39;s time zone" in page.text
    assert "Sun 13 Dec 2026 11:00" in page.text  # now, in Tallinn


def test_next_up_leaves_out_a_paused_campaign(parts: tuple[Settings, Engine, Workspace]) -> None:
    settings, engine, workspace = parts
    pause(engine, "holiday-greetings", FakeClock(NOW))
    try:
        sends = workspace_next_up(engine, lambda: workspace, settings)(NOW, 10)
    finally:
        resume(engine, "holiday-greetings", FakeClock(NOW))
    assert sends and "holiday-greetings" not in {send.campaign_id for send in sends}


def test_status_page_shows_each_campaign_state_with_an_operators_pause(
    parts: tuple[Settings, Engine, Workspace],
) -> None:
    settings, engine, _workspace = parts
    pause(engine, "win-back-test-missing", FakeClock(NOW))  # unknown ids are harmless
    pause(engine, "january-win-back", FakeClock(NOW))
    try:
        with _client(settings, engine) as client:
            data = client.get("/api/status").json()
            page = client.get("/").text
    finally:
        resume(engine, "january-win-back", FakeClock(NOW))

    states = {c["id"]: c["state"] for c in data["campaigns"]}
    assert states["january-win-back"] == "paused" and states["holiday-greetings"] == "active"
    assert data["running"] == len(states) - 1
    assert 'id="campaign-january-win-back"' in page and "tidings resume january-win-back" in page


def test_without_the_daemon_the_page_says_where_next_up_comes_from_and_links_operations(
    parts: tuple[Settings, Engine, Workspace],
) -> None:
    settings, engine, _workspace = parts
    with _client(settings, engine) as client:
        page = client.get("/").text
        health = client.get("/healthz")
        metrics = client.get("/metrics")

    assert 'id="next-up-missing"' in page and "tidings run" in page
    assert 'href="/healthz"' in page and 'href="/metrics"' in page and 'href="/api/status"' in page
    assert health.status_code == 200 and metrics.status_code == 200
    assert '{"detail":"Not Found"}' not in page


def test_an_empty_next_up_says_nothing_is_scheduled(parts: tuple[Settings, Engine, Workspace]) -> None:
    settings, engine, _workspace = parts
    with _client(settings, engine, next_up=lambda now, count: []) as client:
        assert 'id="next-up-none"' in client.get("/").text


def test_the_status_page_follows_a_campaign_file_saved_after_start(
    parts: tuple[Settings, Engine, Workspace], tmp_path: Path
) -> None:
    settings, engine, _workspace = parts
    with _client(settings, engine) as client:
        before = {c["id"] for c in client.get("/api/status").json()["campaigns"]}
        extra = settings.workspace_dir / "campaigns" / "flash-sale.yaml"
        extra.write_text(
            "name: Flash sale\nstatus: draft\naudience: {segment: consenting-customers}\n"
            "trigger: {at: 2026-12-20T10:00}\nsteps:\n  - send: {channel: email, template: win-back}\n"
        )
        try:
            after = {c["id"]: c for c in client.get("/api/status").json()["campaigns"]}
        finally:
            extra.unlink()

    assert "flash-sale" not in before and after["flash-sale"]["state"] == "draft"


def test_a_broadcast_post_in_next_up_is_a_post_not_a_contact(
    parts: tuple[Settings, Engine, Workspace],
) -> None:
    settings, engine, workspace = parts
    provider = workspace_next_up(engine, lambda: workspace, settings)

    with _client(settings, engine, next_up=provider, workspace=lambda: workspace) as client:
        page = client.get("/")
        data = client.get("/api/status").json()

    countdown = next(m for m in data["next_up"] if m["campaign"] == "shipping-countdown")
    assert (countdown["posts"], countdown["audience"]) == (1, None)
    row = page.text.split("shipping-countdown", 1)[1].split("</tr>", 1)[0]
    assert '<td class="n">a post</td>' in row
