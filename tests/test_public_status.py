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
from engine.runtime.controls import pause
from engine.runtime.occurrences import due_occurrences
from engine.runtime.planner import dry_run
from engine.settings import Settings, load_settings
from engine.web.public import create_public_app
from engine.web.status import NextUpProvider, UpcomingMoment
from engine.workspace.loader import Workspace, load_workspace

NOW = datetime(2026, 12, 13, 9, 0, tzinfo=UTC)


def planner_next_up(workspace: Workspace, engine: Engine, settings: Settings) -> NextUpProvider:
    """What the daemon will supply: the next occurrences (as it schedules them) with plan's reach."""

    def provider(now: datetime, count: int) -> list[UpcomingMoment]:
        found = [
            (occurrence, campaign)
            for campaign in workspace.campaigns.values()
            for occurrence in due_occurrences(
                campaign, workspace.schedules, now, now + timedelta(days=60), default_zone=settings.zone
            )
        ]
        found.sort(key=lambda pair: (pair[0].fire_at, pair[1].key))
        moments = []
        with engine.connect() as conn:
            for occurrence, campaign in found[:count]:
                run = dry_run(conn, workspace, campaign, occurrence, settings=settings, now=now)
                moments.append(
                    UpcomingMoment(
                        campaign.key,
                        occurrence.fire_at,
                        None if run.mode == "posts" else run.reach,
                        occurrence.key,
                        run.step_id,
                        occurrence.local_time,
                        occurrence.local,
                    )
                )
        return moments

    return provider


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
    provider = planner_next_up(workspace, engine, settings)
    expected = provider(NOW, 5)

    with _client(settings, engine, next_up=provider) as client:
        page = client.get("/")
        data = client.get("/api/status").json()

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert [m["campaign"] for m in data["next_up"]] == [m.campaign for m in expected]
    greeting = next(m for m in data["next_up"] if m["campaign"] == "holiday-greetings")
    assert greeting["when"] == "Mon 14 Dec 2026 10:00 in each contact's own time zone"
    assert greeting["audience"] == next(m.audience for m in expected if m.campaign == "holiday-greetings")
    assert greeting["audience"] > 0
    assert f">{greeting['audience']:,}</td>" in page.text and "Holiday greetings 2026" in page.text
    assert "Europe/Tallinn, the shop&#39;s time zone" in page.text
    assert "Sun 13 Dec 2026 11:00" in page.text  # now, in Tallinn
    reminder = next(m for m in data["next_up"] if m["campaign"] == "shipping-deadlines")
    assert reminder["when"] == "on each contact's own date, in their time zone"


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
        from engine.runtime.controls import resume

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
