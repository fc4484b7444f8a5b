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
        response = client.post("/events", json=[bad, {"id": "evt-3"}], headers=AUTH)
        not_json = client.post("/events", content=b"{oops", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"index": 0, "field": "data.balance", "message": "Field required"}
    assert {error["index"] for error in response.json()["errors"]} == {0, 1}
    assert response.json()["rejected"] == [0, 1]
    assert not_json.status_code == 400
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ShopEvent.__table__)).scalar_one() == 0  # type: ignore[attr-defined]


def _stored(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(ShopEvent.__table__.c.external_id).order_by("external_id")).scalars())  # type: ignore[attr-defined]


def test_a_mixed_batch_stores_the_valid_events_and_answers_207_with_the_others(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    deep = _event("evt-deep") | {
        "data": {"gift_card_id": "GC2", "amount": "5", "balance": "5", "currency": "EUR"}
    }
    nested: Any = "end"
    for _ in range(300):
        nested = [nested]
    deep["data"]["extra"] = nested
    nul = _event("evt-nul") | {"contact": {"email": "nul@example.com", "first_name": "Ana\u0000"}}
    crlf = _event("evt-crlf") | {"contact": {"email": "crlf@example.com", "first_name": "Ana\r\nBcc: x@evil"}}
    two = _event("evt-two") | {"contact": {"email": "a@x.com,victim@evil.example"}}
    batch = [_event("evt-1"), deep, nul, crlf, two, _event("evt-2")]

    with _client(sqlite_engine, tmp_path, clock) as client:
        response = client.post("/events", json=batch, headers=AUTH)
        again = client.post("/events", json=batch, headers=AUTH)

    assert response.status_code == 207
    body = response.json()
    assert (body["received"], body["stored"], body["duplicate"], body["rejected"]) == (6, 2, 0, [1, 2, 3, 4])
    by_index = {error["index"]: error for error in body["errors"]}
    assert by_index[1]["message"] == "nested deeper than 32 levels" and by_index[1]["field"].startswith(
        "data.extra"
    )
    assert by_index[2] == {"index": 2, "field": "contact.first_name", "message": "contains a NUL character"}
    assert by_index[3]["field"] == "contact.first_name" and "control character (CR)" in by_index[3]["message"]
    assert by_index[4]["field"] == "contact.email" and "not an email address" in by_index[4]["message"]
    assert _stored(sqlite_engine) == ["evt-1", "evt-2"]
    # The shop sends it again (its retry): the stored ones are duplicates, still 2xx, nothing new.
    assert again.status_code == 207 and again.json()["duplicate"] == 2 and again.json()["stored"] == 0


def test_a_body_nested_past_the_parser_is_400_and_too_large_is_413(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(sqlite_engine, tmp_path, clock) as client:
        deep = client.post("/events", content=b"[" * 100_000 + b"]" * 100_000, headers=AUTH)
        large = client.post("/events", content=b" " * (21 * 1024 * 1024), headers=AUTH)
    assert deep.status_code == 400 and deep.json() == {"error": "the body is nested too deeply to read"}
    assert large.status_code == 413


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
