"""End to end on the shipped workspace and the demo shop: fire → plan → gate → render → send.

The fake clock steps from one due moment to the next, exactly as the daemon would live through
the season; the messages go through the real channel clients to servers on 127.0.0.1.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from servers.sendgrid_server import SendGridServer
from servers.smtp_server import SmtpServer
from servers.x_server import XServer
from sqlalchemy import text
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.runtime.dispatcher import dispatcher_for
from engine.runtime.fire import fire
from engine.runtime.occurrences import due_occurrences
from engine.settings import Settings
from engine.store import make_engine, upgrade
from engine.workspace.loader import load_workspace
from engine.workspace.schedules import is_public_holiday

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SEASON_START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
SEASON_END = datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
CONTACTS = 120


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo shop per module (generating it is the slow part); each test copies the file."""
    folder = tmp_path_factory.mktemp("demo")
    engine = make_engine(f"sqlite:///{folder / 'tidings.db'}")
    upgrade(engine)
    generate_demo_shop(
        engine, contacts=CONTACTS, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    )
    engine.dispose()
    return folder / "tidings.db"


@pytest.fixture
def workspace_dir(tmp_path: Path, demo_db: Path) -> Path:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, tmp_path / part)
    (tmp_path / "var").mkdir()
    shutil.copy(demo_db, tmp_path / "var" / "tidings.db")
    return tmp_path


def settings_for(workspace: Path, **channel: Any) -> Settings:
    return Settings(
        workspace=workspace,
        database_url="sqlite:///var/tidings.db",
        secret_key="s" * 40,
        concurrency=4,
        email_rate_per_second=10_000,
        **channel,
    )


def live_through(
    engine: Engine, settings: Settings, clock: FakeClock, campaign_id: str, table: str = "delivery"
) -> dict[str, Any]:
    """Fire every occurrence of the campaign at its time, and dispatch at every due moment until the end."""
    result = load_workspace(settings.workspace_dir, default_timezone=settings.timezone)
    workspace = result.workspace
    campaign = workspace.campaigns[campaign_id]
    occurrences = due_occurrences(
        campaign, workspace.schedules, SEASON_START, SEASON_END, default_zone=settings.zone
    )
    assert occurrences, "the campaign has occurrences in the season"
    with dispatcher_for(engine, settings, clock, workspace) as dispatcher:
        pending_fires = list(occurrences)
        while True:
            with engine.connect() as conn:
                due = conn.execute(
                    text(f"SELECT MIN(scheduled_for) FROM {table} WHERE state IN ('pending', 'retry')")
                ).scalar()
            next_due = datetime.fromisoformat(str(due)).replace(tzinfo=UTC) if due else None
            next_fire = pending_fires[0].fire_at if pending_fires else None
            moments = [m for m in (next_due, next_fire) if m is not None]
            if not moments:
                break
            moment = min(moments)
            if moment > clock.now():
                clock.set(moment)
            if next_fire is not None and next_fire <= clock.now():
                fire(engine, workspace, campaign, pending_fires.pop(0), clock=clock, settings=settings)
            dispatcher.drain()
    return {"occurrences": [o.key for o in occurrences], "workspace": workspace}


def expected_recipients(engine: Engine) -> set[int]:
    """Who should get the shipping reminders, computed independently of the audience compiler."""
    query = """
        SELECT c.id FROM contact c
        WHERE c.country IN ('EE', 'RO', 'US')
          AND EXISTS (SELECT 1 FROM consent k WHERE k.contact_id = c.id AND k.channel = 'email'
                      AND k.withdrawn_at IS NULL)
          AND NOT EXISTS (SELECT 1 FROM suppression s WHERE s.email = c.email
                          AND s.channel IN ('email', 'all'))
          AND EXISTS (SELECT 1 FROM shop_order o WHERE o.contact_id = c.id
                      AND o.placed_at >= '2026-10-31 22:00:00' AND o.placed_at < '2026-12-31 22:00:00')
    """
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(text(query))}


def sent_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT d.id, d.contact_id, d.occurrence, d.sent_at, d.state, d.reason, c.timezone, "
                    "c.country FROM delivery d JOIN contact c ON c.id = d.contact_id "
                    "WHERE d.campaign_id = 'shipping-deadlines'"
                )
            )
        )


def check_season(engine: Engine, delivered: Counter[str], run: dict[str, Any]) -> None:
    rows = sent_rows(engine)
    sent = [r for r in rows if r.state == "sent"]
    expected = expected_recipients(engine)
    assert expected, "the demo shop has eligible contacts"
    assert {(r.contact_id, r.occurrence) for r in sent} == {
        (c, o) for c in expected for o in run["occurrences"]
    }
    assert len(sent) == len(expected) * len(run["occurrences"])
    # Exactly one message per outbox row reached the server.
    assert sorted(delivered.values()) == [1] * len(sent)
    assert set(delivered) == {str(r.id) for r in sent}
    for row in sent:
        moment = (
            datetime.fromisoformat(str(row.sent_at)).replace(tzinfo=UTC).astimezone(ZoneInfo(row.timezone))
        )
        assert (moment.hour, moment.minute) == (9, 0), f"{row.id} sent at {moment} local"
        assert not is_public_holiday(row.country, moment.date())


def test_shipping_deadlines_reach_sendgrid_once_per_contact_at_their_local_nine(
    workspace_dir: Path, clock: FakeClock
) -> None:
    clock = FakeClock(SEASON_START)
    with SendGridServer() as server:
        settings = settings_for(
            workspace_dir,
            email_channel="sendgrid",
            sendgrid_api_key=server.api_key,
            sendgrid_host=server.host,
            public_url="https://shop.example.com",
        )
        engine = make_engine(settings.database_url_resolved)
        run = live_through(engine, settings, clock, "shipping-deadlines")
        accepted = server.accepted
    delivered = Counter(m.body["personalizations"][0]["custom_args"]["delivery_id"] for m in accepted)
    check_season(engine, delivered, run)
    for mail in accepted:
        assert mail.body["headers"]["X-Tidings-Campaign"] == "shipping-deadlines"
        assert mail.body["subject"].startswith(("Order by", "Comandă", "Viimane tellimisaeg"))
        assert (
            mail.body["personalizations"][0]["headers"]["List-Unsubscribe-Post"]
            == "List-Unsubscribe=One-Click"
        )
    engine.dispose()


def test_shipping_deadlines_through_smtp(workspace_dir: Path) -> None:
    clock = FakeClock(SEASON_START)
    with SmtpServer() as server:
        settings = settings_for(
            workspace_dir,
            email_channel="smtp",
            smtp_url=server.url(),
            smtp_require_tls=False,  # a local relay without credentials
            public_url="https://shop.example.com",
        )
        engine = make_engine(settings.database_url_resolved)
        run = live_through(engine, settings, clock, "shipping-deadlines")
        received = server.received
    delivered = Counter(str(mail.message["X-Tidings-Delivery"]) for mail in received)
    check_season(engine, delivered, run)
    engine.dispose()


def test_shipping_deadlines_into_the_file_outbox(workspace_dir: Path) -> None:
    clock = FakeClock(SEASON_START)
    settings = settings_for(workspace_dir, email_channel="outbox")
    engine = make_engine(settings.database_url_resolved)
    run = live_through(engine, settings, clock, "shipping-deadlines")
    files = sorted(settings.outbox_path.rglob("*.eml"))
    delivered: Counter[str] = Counter()
    for path in files:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        delivered[str(message["X-Tidings-Delivery"])] += 1
    check_season(engine, delivered, run)
    engine.dispose()


def test_countdown_posts_reach_the_x_server_once_a_day(workspace_dir: Path) -> None:
    clock = FakeClock(SEASON_START)
    with XServer("x-consumer", "x-access", now=lambda: clock.now().timestamp()) as server:
        settings = settings_for(
            workspace_dir,
            social_channel="x",
            x_consumer_key="x-consumer",
            x_consumer_secret="x-consumer-secret",
            x_access_token="x-access",
            x_access_token_secret="x-access-secret",
            x_api_host=server.url,
        )
        engine = make_engine(settings.database_url_resolved)
        run = live_through(engine, settings, clock, "shipping-countdown", table="post")
        tweets = server.tweets
    with engine.connect() as conn:
        posts = conn.execute(text("SELECT state, reason, last_error, provider_post_id FROM post")).all()
    assert len(run["occurrences"]) == len(posts) == 13  # Dec 10–22, one a day
    sent = [p for p in posts if p.state == "sent"]
    assert sent and {t.id for t in tweets} == {p.provider_post_id for p in sent}
    assert len({t.text for t in tweets}) == len(tweets)
    # X refuses a text it already has (403 duplicate content): recorded as permanent, never retried.
    for post in posts:
        if post.state != "sent":
            assert (post.state, post.reason) == ("failed", "permanent")
            assert "duplicate" in post.last_error
    assert len(server.exchanges) == len(posts)
    engine.dispose()
