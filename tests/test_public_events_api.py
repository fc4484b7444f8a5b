"""POST /events, /healthz and /metrics through the public app."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from engine import metrics
from engine.clock import FakeClock
from engine.settings import Settings
from engine.store.models import Delivery, ShopEvent
from engine.web.public import create_public_app

TOKEN = "shop-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(engine: Engine, tmp_path: Path, clock: FakeClock, **kwargs: Any) -> TestClient:
    overrides = {"events_token": TOKEN} | kwargs.pop("settings", {})
    settings = Settings(workspace=tmp_path, secret_key="s" * 40, _env_file=None, **overrides)  # type: ignore[call-arg]
    return TestClient(create_public_app(settings, engine, clock, **kwargs))


def _event(event_id: str = "evt-1") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "gift_card.redeemed",
        "occurred_at": "2026-12-27T10:00:00+02:00",
        "contact": {"email": "kid@example.com", "locale": "et"},
        "data": {"gift_card_id": "GC1", "amount": "50", "balance": "50", "currency": "EUR"},
    }


def test_without_a_configured_token_the_api_answers_503(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(sqlite_engine, tmp_path, clock, settings={"events_token": None}) as client:
        assert client.post("/events", json=_event(), headers=AUTH).status_code == 503


def test_a_missing_or_wrong_bearer_token_gets_401(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(sqlite_engine, tmp_path, clock) as client:
        assert client.post("/events", json=_event()).status_code == 401
        assert (
            client.post("/events", json=_event(), headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        assert client.post("/events", json=_event(), headers={"Authorization": TOKEN}).status_code == 401


def test_invalid_events_get_422_naming_index_and_field(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    bad = _event("evt-2")
    del bad["data"]["balance"]
    with _client(sqlite_engine, tmp_path, clock) as client:
        response = client.post("/events", json=[_event(), bad], headers=AUTH)
        not_json = client.post("/events", content=b"{oops", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"index": 1, "field": "data.balance", "message": "Field required"}]
    assert not_json.status_code == 400
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ShopEvent.__table__)).scalar_one() == 0  # type: ignore[attr-defined]


def test_stored_events_are_handed_to_the_hook_once(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    handed: list[list[int]] = []
    with _client(sqlite_engine, tmp_path, clock, on_events_stored=handed.append) as client:
        first = client.post("/events", json=_event(), headers=AUTH)
        again = client.post("/events", json=[_event()], headers=AUTH)
    assert first.status_code == 200 and first.json() == {"received": 1, "stored": 1, "duplicate": 0}
    assert again.status_code == 200 and again.json() == {"received": 1, "stored": 0, "duplicate": 1}
    with sqlite_engine.connect() as conn:
        ids = list(conn.execute(select(ShopEvent.__table__.c.id)).scalars())  # type: ignore[attr-defined]
    assert handed == [ids]


def test_health_reports_backlog_and_the_probe(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(
            insert(Delivery.__table__),  # type: ignore[attr-defined]
            [
                {
                    "idempotency_key": f"k{i}",
                    "campaign_id": "c",
                    "step_id": "s",
                    "template": "t",
                    "occurrence": "o",
                    "scheduled_for": datetime(2026, 11, 30, tzinfo=UTC),
                    "state": "pending",
                    "created_at": clock.now(),
                    "context": {},
                }
                for i in range(3)
            ],
        )
    alive = {"scheduler": "alive", "alive": True}
    with _client(sqlite_engine, tmp_path, clock, health_probe=lambda: alive) as client:
        ok = client.get("/healthz")
        alive["alive"] = False
        down = client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "database": "ok", "backlog": 3, "scheduler": "alive", "alive": True}
    assert down.status_code == 503


def test_health_is_503_when_the_database_does_not_answer(tmp_path: Path, clock: FakeClock) -> None:
    from engine.store import make_engine

    missing = tmp_path / "no-such-dir" / "sub"
    engine = make_engine(f"sqlite:///{missing}/x.db")
    missing.rmdir()
    with _client(engine, tmp_path, clock) as client:
        response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["database"] == "unreachable"


def test_metrics_show_sends_retries_latency_and_outbox_depth(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    metrics.record_send("holiday-greetings", "email", "sent", 0.12)
    metrics.record_retry("email")
    metrics.record_render(0.0003)
    with _client(sqlite_engine, tmp_path, clock) as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'tidings_sends_total{campaign="holiday-greetings",channel="email",outcome="sent"}' in body
    assert 'tidings_retries_total{channel="email"}' in body
    assert "tidings_send_seconds_bucket" in body and "tidings_render_seconds_count" in body
    assert 'tidings_outbox_rows{state="pending"} 0.0' in body
