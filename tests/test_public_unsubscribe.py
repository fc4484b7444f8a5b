"""One-click unsubscribe and the preferences page, through the real public app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.settings import Settings
from engine.store.models import Consent, Contact, Suppression
from engine.store.suppressions import blocked_reason
from engine.tokens import UnsubscribeTokens
from engine.web.public import create_public_app

KEY = "k" * 40
GRANTED = datetime(2026, 11, 1, tzinfo=UTC)


def _settings(tmp_path: Path) -> Settings:
    return Settings(workspace=tmp_path, secret_key=KEY, _env_file=None)  # type: ignore[call-arg]


def _contact(engine: Engine, email: str = "ann@example.com", locale: str | None = "ro") -> int:
    with engine.begin() as conn:
        cid = conn.execute(
            insert(Contact.__table__).returning(Contact.__table__.c.id),  # type: ignore[attr-defined]
            {
                "email": email,
                "locale": locale,
                "tags": [],
                "attributes": {},
                "orders_count": 0,
                "total_spent": 0,
            },
        ).scalar_one()
        conn.execute(
            insert(Consent.__table__),  # type: ignore[attr-defined]
            [
                {
                    "contact_id": cid,
                    "channel": channel,
                    "granted_at": GRANTED,
                    "source": "checkout",
                    "legal_basis": "consent",
                }
                for channel in ("email", "x")
            ],
        )
    return int(cid)


def _state(engine: Engine) -> tuple[list[tuple[str, str | None]], list[tuple[str, str, str]]]:
    with engine.connect() as conn:
        consents = [
            (r.channel, r.withdrawn_source)
            for r in conn.execute(select(Consent.__table__).order_by("channel"))  # type: ignore[attr-defined]
        ]
        suppressions = [
            (r.email, r.channel, r.reason)
            for r in conn.execute(select(Suppression.__table__))  # type: ignore[attr-defined]
        ]
    return consents, suppressions


@pytest.fixture
def client(sqlite_engine: Engine, tmp_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_public_app(_settings(tmp_path), sqlite_engine, clock)) as test_client:
        yield test_client


def test_one_click_withdraws_consent_and_suppresses_marketing_but_not_transactional(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    cid = _contact(store_engine)
    token = UnsubscribeTokens(KEY).sign(cid, "email", "holiday-greetings")
    with TestClient(create_public_app(_settings(tmp_path), store_engine, clock)) as client:
        response = client.post(
            f"/u/{token}",
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    consents, suppressions = _state(store_engine)
    assert consents == [("email", "one-click:holiday-greetings"), ("x", None)]
    assert suppressions == [("ann@example.com", "email", "unsubscribe")]
    with store_engine.connect() as conn:
        assert blocked_reason(conn, "ann@example.com", "email", "marketing") == "unsubscribe"
        assert blocked_reason(conn, "ann@example.com", "email", "transactional") is None


def test_clicking_twice_changes_nothing_more(client: TestClient, sqlite_engine: Engine) -> None:
    token = UnsubscribeTokens(KEY).sign(_contact(sqlite_engine), "email")
    assert client.post(f"/u/{token}").status_code == 200
    before = _state(sqlite_engine)
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _state(sqlite_engine) == before


@pytest.mark.parametrize("forge", ["tampered", "foreign", "garbage"])
def test_a_tampered_or_foreign_token_gets_400_and_changes_nothing(
    client: TestClient, sqlite_engine: Engine, forge: str
) -> None:
    cid = _contact(sqlite_engine)
    good = UnsubscribeTokens(KEY).sign(cid, "email")
    token = {
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "foreign": UnsubscribeTokens("z" * 40).sign(cid, "email"),
        "garbage": "not-a-token",
    }[forge]
    before = _state(sqlite_engine)
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert client.get(f"/u/{token}").status_code == 400
    assert _state(sqlite_engine) == before


def test_the_page_speaks_the_contacts_language_and_offers_each_channel(
    client: TestClient, sqlite_engine: Engine
) -> None:
    token = UnsubscribeTokens(KEY).sign(_contact(sqlite_engine, locale="ro-RO"), "email")
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert 'lang="ro"' in page.text and "Dezabonare" in page.text
    assert 'value="email"' in page.text and 'value="x"' in page.text
    assert "ann@example.com" not in page.text  # masked
    assert _state(sqlite_engine)[1] == []  # looking changes nothing


def test_the_preferences_form_unsubscribes_only_the_chosen_channels(
    client: TestClient, sqlite_engine: Engine
) -> None:
    token = UnsubscribeTokens(KEY).sign(_contact(sqlite_engine, locale="et"), "email")
    done = client.post(
        f"/u/{token}", data={"form": "preferences", "channel": ["x"]}, headers={"Accept": "text/html"}
    )
    assert done.status_code == 200 and "Mainimised X-is" in done.text
    consents, suppressions = _state(sqlite_engine)
    assert consents == [("email", None), ("x", "preferences page")]
    assert suppressions == [("ann@example.com", "x", "unsubscribe")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_click_works_over_a_real_socket(sqlite_engine: Engine, tmp_path: Path, clock: FakeClock) -> None:
    token = UnsubscribeTokens(KEY).sign(_contact(sqlite_engine), "email")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_public_app(_settings(tmp_path), sqlite_engine, clock),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        response = httpx.post(
            f"http://127.0.0.1:{port}/u/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    assert response.status_code == 200 and "set-cookie" not in response.headers
    assert _state(sqlite_engine)[1] == [("ann@example.com", "email", "unsubscribe")]
