"""A channel that cannot send pauses as a whole; a post that went out despite a timeout counts as sent.

Through the real clients against the compatible servers: a revoked SendGrid key (401) suspends the
email channel and leaves every message pending and unattempted (not failed one by one); X's spent
daily cap holds every post until its 24-hour reset; credits exhausted (402) suspends X until an
operator resumes it; a post whose answer timed out but which X published is recorded as sent when
the retry comes back as a duplicate.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from servers.sendgrid_server import SendGridServer, slow
from servers.x_server import XServer, credits_exhausted, daily_cap_reached
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, add_post
from test_dispatch_support import broadcast, campaign, workspace, write_templates

from engine.channels.factory import email_channel_for, social_channel_for
from engine.clock import FakeClock
from engine.render.renderer import Renderer
from engine.runtime.channel_state import resume, suspensions
from engine.runtime.dispatcher import Dispatcher
from engine.settings import Settings
from engine.store.models import Delivery, Post

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
POST = Post.__table__  # type: ignore[attr-defined]
KEYS = {
    "x_consumer_key": "ck",
    "x_consumer_secret": "cs",
    "x_access_token": "at",
    "x_access_token_secret": "as",
}


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer() as server:
        yield server


@pytest.fixture
def x_server(clock: FakeClock) -> Iterator[XServer]:
    with XServer(
        "ck", "at", consumer_secret="cs", access_token_secret="as", now=lambda: clock.now().timestamp()
    ) as server:
        yield server


def _dispatcher(
    engine: Engine, settings: Settings, clock: FakeClock, root: Path, *campaigns: object
) -> Dispatcher:
    write_templates(root)
    return Dispatcher(
        engine,
        settings,
        clock,
        Renderer(settings, root / "templates"),
        email_channel_for(settings, now=clock.now),
        social_channel_for(settings, now=clock.now),
        workspace(*campaigns, root=root),  # type: ignore[arg-type]
        worker_id="w1",
        rng=random.Random(1),
    )


def _countdown_post(engine: Engine, now: datetime, counting_to: str) -> int:
    """A countdown post counting to a date of its own (each day's text differs: X refuses repeats)."""
    post_id = add_post(engine, now=now, occurrence=counting_to)
    with engine.begin() as conn:
        conn.execute(update(POST).where(POST.c.id == post_id).values(context={"trigger_date": counting_to}))
    return post_id


def _states(engine: Engine, table: object) -> list[tuple[str, int, str | None]]:
    with engine.connect() as conn:
        return [
            (row.state, row.attempts, row.reason)
            for row in conn.execute(select(table).order_by(table.c.id))  # type: ignore[attr-defined]
        ]


def test_a_revoked_sendgrid_key_suspends_email_instead_of_failing_every_message(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    for index in range(5):
        add_delivery(store_engine, add_contact(store_engine, f"c{index}@example.com", now=now), now=now)
    settings = Settings(
        workspace=tmp_path,
        email_channel="sendgrid",
        sendgrid_api_key="SG.revoked",
        sendgrid_host=sendgrid.host,
        secret_key="s" * 40,
        concurrency=2,
        public_url="https://shop.example.com",
    )
    with _dispatcher(
        store_engine, settings, clock, tmp_path, campaign()
    ) as dispatcher:  # the server says 401
        first = dispatcher.drain()
        second = dispatcher.drain()
    assert first.sent == 0 and first.failed == 0
    assert "email" in first.suspended and second.claimed == 0 and "email" in second.suspended
    assert {(state, attempts) for state, attempts, _ in _states(store_engine, DELIVERY)} == {("pending", 0)}
    with store_engine.connect() as conn:
        suspended = suspensions(conn, clock.now())
    assert suspended["email"].until is None
    with store_engine.begin() as conn:
        assert resume(conn, "email")
    replaced = settings.model_copy(update={"sendgrid_api_key": SecretStr(sendgrid.api_key)})
    with _dispatcher(store_engine, replaced, clock, tmp_path, campaign()) as dispatcher:  # a new key
        assert dispatcher.drain().sent == 5


def test_x_s_daily_cap_holds_every_post_until_its_reset(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, x_server: XServer
) -> None:
    now = clock.now()
    _countdown_post(store_engine, now, "2026-12-24")
    reset = int((now + timedelta(hours=20)).timestamp())
    x_server.faults.script(daily_cap_reached(reset, int((now + timedelta(minutes=15)).timestamp())))
    settings = Settings(
        workspace=tmp_path, social_channel="x", x_api_host=x_server.url, secret_key="s" * 40, **KEYS
    )
    with _dispatcher(store_engine, settings, clock, tmp_path, broadcast()) as dispatcher:
        stats = dispatcher.drain()
        assert stats.posts_sent == 0 and "x" in stats.suspended
        clock.advance(3600)  # an hour later the cap has not reset: the next posts are not even tried
        _countdown_post(store_engine, clock.now(), "2026-12-25")
        _countdown_post(store_engine, clock.now(), "2026-12-26")
        assert dispatcher.drain().claimed == 0
        assert len(x_server.exchanges) == 1
        clock.set(now + timedelta(hours=20, seconds=1))
        assert dispatcher.drain().posts_sent == 3
    assert [state for state, _, _ in _states(store_engine, POST)] == ["sent"] * 3


def test_credits_exhausted_suspends_x_until_an_operator_resumes_it(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, x_server: XServer
) -> None:
    add_post(store_engine, now=clock.now())
    x_server.faults.script(credits_exhausted())
    settings = Settings(
        workspace=tmp_path, social_channel="x", x_api_host=x_server.url, secret_key="s" * 40, **KEYS
    )
    with _dispatcher(store_engine, settings, clock, tmp_path, broadcast()) as dispatcher:
        stats = dispatcher.drain()
        assert "credits" in stats.suspended["x"].lower()
        clock.advance(86_400 * 3)
        assert dispatcher.drain().claimed == 0
    assert _states(store_engine, POST)[0][:2] == ("pending", 0)


def test_a_post_published_despite_a_timeout_is_recorded_sent_when_the_retry_is_a_duplicate(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, x_server: XServer
) -> None:
    post_id = add_post(store_engine, now=clock.now())
    x_server.faults.script(slow(1.0))  # the channel times out after 0.5 s; the server publishes anyway
    settings = Settings(
        workspace=tmp_path,
        social_channel="x",
        x_api_host=x_server.url,
        secret_key="s" * 40,
        x_timeout_seconds=0.5,
        retry_base_seconds=1,
        **KEYS,
    )
    with _dispatcher(store_engine, settings, clock, tmp_path, broadcast()) as dispatcher:
        first = dispatcher.drain()
        assert first.retried == 1
        deadline = time.monotonic() + 10
        while not x_server.tweets and time.monotonic() < deadline:
            time.sleep(0.05)
        clock.advance(120)
        second = dispatcher.drain()
    assert second.posts_sent == 1
    with store_engine.connect() as conn:
        row = conn.execute(select(POST).where(POST.c.id == post_id)).one()
    assert row.state == "sent" and len(x_server.tweets) == 1
