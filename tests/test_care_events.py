"""Care events through POST /events and `tidings import`: gift cards for someone, returns, claims."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.settings import Settings
from engine.store.models import Consent, Contact, ShopEvent
from engine.transfer import import_file
from engine.transfer.event_data import MESSAGE_MAX_CHARS
from engine.web.public import create_public_app

TOKEN = "shop-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(engine: Engine, tmp_path: Path, clock: FakeClock) -> TestClient:
    settings = Settings(workspace=tmp_path, secret_key="s" * 40, events_token=TOKEN, _env_file=None)  # type: ignore[call-arg]
    return TestClient(create_public_app(settings, engine, clock))


def _purchase(event_id: str = "gc-1", **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "gift_card.purchased",
        "occurred_at": "2026-12-15T19:20:00+02:00",
        "contact": {"email": "kadri.tamm@example.com", "first_name": "Kadri", "locale": "et"},
        "data": {
            "gift_card_id": "GC-9",
            "amount": "50.00",
            "currency": "EUR",
            "recipient_email": "Liis.Magi@Example.com",
            "recipient_name": "Liis Mägi",
            "recipient_locale": "et",
            "recipient_country": "ee",
            "send_on": "2026-12-24",
            "sender_name": "Kadri",
            "message": "Häid jõule!\r\nSinu Kadri",
        }
        | data,
    }


def _stored(engine: Engine, external_id: str) -> ShopEvent:
    with engine.connect() as conn:
        row = conn.execute(
            select(ShopEvent.__table__).where(ShopEvent.__table__.c.external_id == external_id)
        ).one()  # type: ignore[attr-defined]
    return row  # type: ignore[return-value]


def _contact(engine: Engine, email: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Contact.__table__).where(Contact.__table__.c.email == email)).one_or_none()  # type: ignore[attr-defined]


def test_a_card_bought_for_someone_makes_the_recipient_a_contact_without_consent(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(store_engine, tmp_path, clock) as client:
        response = client.post("/events", json=_purchase(), headers=AUTH)
    assert response.status_code == 200, response.text
    recipient = _contact(store_engine, "liis.magi@example.com")
    assert (recipient.first_name, recipient.last_name, recipient.locale, recipient.country) == (
        "Liis",
        "Mägi",
        "et",
        "EE",
    )
    with store_engine.connect() as conn:
        consents = conn.execute(
            select(Consent.__table__).where(Consent.__table__.c.contact_id == recipient.id)  # type: ignore[attr-defined]
        ).all()
    assert consents == []


def test_the_stored_payload_is_the_events_data_with_date_and_note_as_sent(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(store_engine, tmp_path, clock) as client:
        assert client.post("/events", json=_purchase(), headers=AUTH).status_code == 200
    payload = _stored(store_engine, "gc-1").payload
    assert payload["gift_card_id"] == "GC-9"  # flat: the runtime and templates read event.data.gift_card_id
    assert payload["send_on"] == "2026-12-24"
    assert payload["message"] == "Häid jõule!\nSinu Kadri"
    assert payload["recipient_email"] == "liis.magi@example.com"
    assert "contact" not in payload


def test_a_recipient_who_is_already_a_customer_keeps_their_own_details(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    own = {
        "id": "signup-1",
        "type": "site.first_visit",
        "occurred_at": "2026-11-02T10:00:00+02:00",
        "contact": {"email": "liis.magi@example.com", "first_name": "Elisabeth", "locale": "en"},
        "data": {},
    }
    with _client(store_engine, tmp_path, clock) as client:
        assert client.post("/events", json=own, headers=AUTH).status_code == 200
        assert client.post("/events", json=_purchase(), headers=AUTH).status_code == 200
    recipient = _contact(store_engine, "liis.magi@example.com")
    assert (recipient.first_name, recipient.locale) == ("Elisabeth", "en")
    assert (recipient.last_name, recipient.country) == ("Mägi", "EE")  # blanks are filled


def test_the_buyers_note_is_length_limited_and_refused_with_control_characters(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(sqlite_engine, tmp_path, clock) as client:
        too_long = client.post("/events", json=_purchase(message="x" * (MESSAGE_MAX_CHARS + 1)), headers=AUTH)
        control = client.post("/events", json=_purchase("gc-2", message="hi\x1b[31m"), headers=AUTH)
        longest = client.post(
            "/events", json=_purchase("gc-3", message="é" * MESSAGE_MAX_CHARS), headers=AUTH
        )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "data.message"
    assert f"at most {MESSAGE_MAX_CHARS}" in too_long.json()["errors"][0]["message"]
    assert control.status_code == 422 and control.json()["errors"][0]["field"] == "data.message"
    assert longest.status_code == 200


def test_recipient_fields_and_send_on_are_checked(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    cases = {
        "send_on": "24.12.2026",
        "recipient_locale": "estonian please",
        "recipient_country": "EST",
        "recipient_name": "Liis\nMägi",
        "redeem_url": "javascript:alert(1)",
    }
    with _client(sqlite_engine, tmp_path, clock) as client:
        for index, (name, value) in enumerate(cases.items()):
            response = client.post("/events", json=_purchase(f"bad-{index}", **{name: value}), headers=AUTH)
            assert response.status_code == 422, name
            assert response.json()["errors"][0]["field"] == f"data.{name}"


def _care_event(event_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": kind,
        "occurred_at": "2027-01-05T11:00:00+02:00",
        "contact": {"email": "ioana.marin@example.com", "locale": "ro"},
        "data": data,
    }


def test_claims_and_shipped_exchanges_are_accepted_with_their_fields(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    batch = [
        _care_event("c-1", "claim.opened", claim_id="CL-1", order_id="NB-1", reason="damaged"),
        _care_event("c-2", "claim.resolved", claim_id="CL-1", resolution="refund"),
        _care_event("x-1", "exchange.shipped", order_id="NB-1", tracking_url="https://track.example.com/1"),
    ]
    with _client(store_engine, tmp_path, clock) as client:
        response = client.post("/events", json=batch, headers=AUTH)
    assert response.status_code == 200 and response.json()["stored"] == 3
    assert _stored(store_engine, "c-2").payload == {"claim_id": "CL-1", "resolution": "refund"}


def test_a_claim_without_its_id_or_a_shipped_exchange_with_a_script_link_is_refused(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _client(sqlite_engine, tmp_path, clock) as client:
        no_id = client.post("/events", json=_care_event("c-1", "claim.opened", order_id="NB-1"), headers=AUTH)
        script = client.post(
            "/events",
            json=_care_event("x-1", "exchange.shipped", order_id="NB-1", tracking_url="javascript:alert(1)"),
            headers=AUTH,
        )
    assert no_id.status_code == 422 and no_id.json()["errors"][0]["field"] == "data.claim_id"
    assert script.status_code == 422 and script.json()["errors"][0]["field"] == "data.tracking_url"


def test_import_checks_event_payloads_against_the_same_schemas(sqlite_engine: Engine, tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("email\nioana.marin@example.com\n", encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"external_id": "c-1", "type": "claim.opened", "email": "ioana.marin@example.com",'
        ' "occurred_at": "2027-01-05T11:00:00+02:00", "payload": {"claim_id": "CL-1", "reason": "damaged"}}\n'
        '{"external_id": "c-2", "type": "claim.resolved", "email": "ioana.marin@example.com",'
        ' "occurred_at": "2027-01-06T11:00:00+02:00", "payload": {"order_id": "NB-1"}}\n',
        encoding="utf-8",
    )
    problems: list[str] = []
    clock = FakeClock(datetime(2027, 1, 7, 10, 0, tzinfo=UTC))
    import_file(sqlite_engine, "contacts", contacts, clock=clock)
    report = import_file(
        sqlite_engine, "events", events, clock=clock, on_problem=lambda p: problems.append(str(p))
    )
    assert (report.imported, report.rejected) == (1, 1)
    assert problems[0].startswith(f"{events}:2:") and "payload.claim_id: Field required" in problems[0]
