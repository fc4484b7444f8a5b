"""`tidings contact export|forget`: everything held comes out; after forget nothing personal remains."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.engine import Engine

from engine.cli import main
from engine.feedback.shop_events import ingest_events, validate_events
from engine.store import write_transaction
from engine.store.models import ALL_TABLES, Contact, Delivery, DeliveryEvent
from engine.store.suppressions import blocked_reason, suppressed_clause

NOW = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)
EMAIL = "maria.popescu@example.ro"


def _seed(engine: Engine) -> None:
    consent = {"email": {"granted": True, "source": "checkout", "wording_version": "v2"}}
    events = [
        {
            "id": "e1",
            "type": "order.placed",
            "occurred_at": "2026-12-01T10:00:00+02:00",
            "contact": {"email": EMAIL, "first_name": "Maria", "last_name": "Popescu", "consent": consent},
            "data": {"order_id": "O-1", "total": "80", "currency": "RON", "shipping_method": "express"},
        },
        {
            "id": "e2",
            "type": "gift_card.purchased",
            "occurred_at": "2026-12-02T10:00:00+02:00",
            "contact": {"email": "friend@example.ro", "first_name": "Ioana"},
            "data": {"gift_card_id": "GC-1", "amount": "100", "currency": "RON", "recipient_email": EMAIL},
        },
    ]
    ingest_events(engine, validate_events(events), now=NOW)
    with write_transaction(engine) as conn:
        cid = conn.execute(
            select(Contact.__table__.c.id).where(Contact.__table__.c.email == EMAIL)
        ).scalar_one()  # type: ignore[attr-defined]
        did = conn.execute(
            Delivery.__table__.insert().returning(Delivery.__table__.c.id),  # type: ignore[attr-defined]
            {
                "idempotency_key": "k",
                "campaign_id": "holiday",
                "step_id": "s",
                "contact_id": cid,
                "template": "t",
                "occurrence": "o",
                "scheduled_for": NOW,
                "state": "failed",
                "created_at": NOW,
                "last_error": f"550 {EMAIL} mailbox full",
                "context": {"first_name": "Maria"},
            },
        ).scalar_one()
        conn.execute(
            DeliveryEvent.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "provider_event_id": "sg1",
                    "delivery_id": did,
                    "contact_id": cid,
                    "email": EMAIL,
                    "type": "open",
                    "occurred_at": NOW,
                    "payload": {"email": EMAIL},
                }
            ],
        )


def _mentions(engine: Engine, *needles: str) -> list[str]:
    """Every table whose text (any column, JSON included) mentions one of the needles."""
    found = []
    with engine.connect() as conn:
        for model in ALL_TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            conditions = [
                func.lower(cast(column, String)).like(f"%{needle.lower()}%")
                for column in table.columns
                for needle in needles
            ]
            if conn.execute(select(func.count()).select_from(table).where(or_(*conditions))).scalar_one():
                found.append(table.name)
    return found


@pytest.fixture
def cli(store_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    url = store_engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", url)
    return store_engine


def test_export_holds_everything_about_the_contact(cli: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(cli)
    assert main(["contact", "export", EMAIL.upper()]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["contact"]["first_name"] == "Maria"
    assert [c["wording_version"] for c in data["consents"]] == ["v2"]
    assert [o["external_id"] for o in data["orders"]] == ["O-1"]
    assert [g["external_id"] for g in data["gift_cards"]] == ["GC-1"]
    assert len(data["events"]) == 1 and len(data["deliveries"]) == 1 and len(data["delivery_events"]) == 1


def test_forget_leaves_no_personal_data_and_keeps_the_address_suppressed(
    cli: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(cli)
    assert _mentions(cli, EMAIL, "Popescu")  # the check can see them before
    assert main(["contact", "forget", EMAIL]) == 0
    assert _mentions(cli, EMAIL, "Popescu", "Maria") == []
    with cli.connect() as conn:
        assert blocked_reason(conn, EMAIL, "email", "transactional") == "forgotten"
        deliveries = conn.execute(select(func.count()).select_from(Delivery.__table__)).scalar_one()  # type: ignore[attr-defined]
    assert deliveries == 1  # statistics survive, anonymised
    # An import that brings the address back still finds it suppressed, in SQL too.
    ingest_events(
        cli,
        validate_events(
            {
                "id": "e9",
                "type": "custom.back",
                "occurred_at": "2027-01-05T10:00:00Z",
                "contact": {"email": EMAIL},
            }
        ),
        now=NOW,
    )
    contacts = Contact.__table__  # type: ignore[attr-defined]
    with cli.connect() as conn:
        mailable = (
            conn.execute(
                select(contacts.c.email).where(~suppressed_clause(contacts.c.email, "email", "transactional"))
            )
            .scalars()
            .all()
        )
    assert EMAIL not in mailable and "friend@example.ro" in mailable
    assert main(["contact", "export", "nobody@example.com"]) == 1
