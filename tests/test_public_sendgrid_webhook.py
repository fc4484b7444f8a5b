"""The SendGrid event webhook: signatures checked like SendGrid signs, events applied once."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.feedback.stats import campaign_stats
from engine.settings import Settings
from engine.store.models import Consent, Contact, Delivery, DeliveryEvent
from engine.store.suppressions import blocked_reason
from engine.web.public import create_public_app

PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC_B64 = base64.b64encode(
    PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def sign(body: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = PRIVATE) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def _app(engine: Engine, tmp_path: Path, clock: FakeClock, **overrides: Any) -> TestClient:
    settings = Settings(workspace=tmp_path, secret_key="s" * 40, _env_file=None, **overrides)  # type: ignore[call-arg]
    return TestClient(create_public_app(settings, engine, clock))


def _seed(engine: Engine, clock: FakeClock) -> int:
    with engine.begin() as conn:
        cid = conn.execute(
            insert(Contact.__table__).returning(Contact.__table__.c.id),  # type: ignore[attr-defined]
            {"email": "ann@example.com", "tags": [], "attributes": {}, "orders_count": 0, "total_spent": 0},
        ).scalar_one()
        conn.execute(
            insert(Consent.__table__),  # type: ignore[attr-defined]
            [{"contact_id": cid, "channel": "email", "granted_at": clock.now(), "source": "checkout"}],
        )
        did = conn.execute(
            insert(Delivery.__table__).returning(Delivery.__table__.c.id),  # type: ignore[attr-defined]
            {
                "idempotency_key": "k1",
                "campaign_id": "holiday",
                "step_id": "s1",
                "contact_id": cid,
                "template": "t",
                "occurrence": "o",
                "scheduled_for": clock.now(),
                "state": "sent",
                "created_at": clock.now(),
                "context": {},
                "sent_at": clock.now(),
            },
        ).scalar_one()
    return int(did)


def _events(delivery_id: int) -> bytes:
    return json.dumps(
        [
            {
                "email": "ann@example.com",
                "event": "delivered",
                "sg_event_id": "e1",
                "timestamp": 1796112000,
                "delivery_id": str(delivery_id),
                "campaign_id": "holiday",
            },
            {
                "email": "ann@example.com",
                "event": "click",
                "url": "https://shop.example.com/x",
                "sg_event_id": "e2",
                "timestamp": 1796112060,
                "delivery_id": str(delivery_id),
            },
            {
                "email": "ann@example.com",
                "event": "spamreport",
                "sg_event_id": "e3",
                "timestamp": 1796112120,
                "delivery_id": str(delivery_id),
            },
            {
                "email": "soft@example.com",
                "event": "bounce",
                "type": "blocked",
                "sg_event_id": "e4",
                "timestamp": 1796112120,
            },
        ]
    ).encode()


def test_a_signed_batch_is_applied_once_even_when_delivered_twice(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    delivery_id = _seed(store_engine, clock)
    body = _events(delivery_id)
    stamp = str(int(clock.now().timestamp()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": sign(body, stamp),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "Content-Type": "application/json",
    }
    with _app(store_engine, tmp_path, clock, sendgrid_webhook_public_key=PUBLIC_B64) as client:
        first = client.post("/webhooks/sendgrid", content=body, headers=headers)
        second = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["stored"] == 4
    assert second.status_code == 200 and second.json() == {
        "received": 4,
        "stored": 0,
        "duplicate": 4,
        "paused": [],
    }
    with store_engine.connect() as conn:
        rows = conn.execute(select(DeliveryEvent.__table__).order_by("provider_event_id")).all()  # type: ignore[attr-defined]
        assert [(r.type, r.delivery_id) for r in rows] == [
            ("delivered", delivery_id),
            ("click", delivery_id),
            ("spamreport", delivery_id),
            ("blocked", None),
        ]
        assert rows[1].url == "https://shop.example.com/x"
        assert blocked_reason(conn, "ann@example.com", "email", "transactional") == "spam_report"
        assert blocked_reason(conn, "soft@example.com", "email", "marketing") is None
        open_consents = conn.execute(
            select(func.count())
            .select_from(Consent.__table__)
            .where(Consent.__table__.c.withdrawn_at.is_(None))  # type: ignore[attr-defined]
        ).scalar_one()
    assert open_consents == 0


@pytest.mark.parametrize("problem", ["missing", "invalid", "other_key", "stale", "future", "garbled"])
def test_unverifiable_posts_are_refused_with_403(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock, problem: str
) -> None:
    body = _events(1)
    now = str(int(clock.now().timestamp()))
    stale = str(int(clock.now().timestamp()) - 26 * 3600)  # past SendGrid's 24 h of retries
    future = str(int(clock.now().timestamp()) + 3600)
    headers = {
        "missing": {},
        "invalid": {
            "X-Twilio-Email-Event-Webhook-Signature": sign(b"[]", now),
            "X-Twilio-Email-Event-Webhook-Timestamp": now,
        },
        "other_key": {
            "X-Twilio-Email-Event-Webhook-Signature": sign(
                body, now, ec.generate_private_key(ec.SECP256R1())
            ),
            "X-Twilio-Email-Event-Webhook-Timestamp": now,
        },
        "stale": {
            "X-Twilio-Email-Event-Webhook-Signature": sign(body, stale),
            "X-Twilio-Email-Event-Webhook-Timestamp": stale,
        },
        "future": {
            "X-Twilio-Email-Event-Webhook-Signature": sign(body, future),
            "X-Twilio-Email-Event-Webhook-Timestamp": future,
        },
        "garbled": {
            "X-Twilio-Email-Event-Webhook-Signature": "%%%not base64",
            "X-Twilio-Email-Event-Webhook-Timestamp": now,
        },
    }[problem]
    with _app(sqlite_engine, tmp_path, clock, sendgrid_webhook_public_key=PUBLIC_B64) as client:
        assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 403
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeliveryEvent.__table__)).scalar_one() == 0  # type: ignore[attr-defined]


def test_without_a_key_unsigned_posts_are_refused_unless_allowed(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    body = _events(1)
    with _app(sqlite_engine, tmp_path, clock) as client:
        assert client.post("/webhooks/sendgrid", content=body).status_code == 403
    with _app(sqlite_engine, tmp_path, clock, sendgrid_webhook_unsigned="allow") as client:
        assert client.post("/webhooks/sendgrid", content=body).status_code == 200
        assert client.post("/webhooks/sendgrid", content=b"{not json").status_code == 400


def test_event_timestamps_are_kept_as_aware_times(
    sqlite_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    with _app(sqlite_engine, tmp_path, clock, sendgrid_webhook_unsigned="allow") as client:
        client.post("/webhooks/sendgrid", content=_events(1))
    with sqlite_engine.connect() as conn:
        first = conn.execute(select(DeliveryEvent.__table__.c.occurred_at).limit(1)).scalar_one()  # type: ignore[attr-defined]
    assert first == datetime.fromtimestamp(1796112000, UTC)


def _signed(body: bytes, stamp: int) -> dict[str, str]:
    return {
        "X-Twilio-Email-Event-Webhook-Signature": sign(body, str(stamp)),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(stamp),
        "Content-Type": "application/json",
    }


def test_a_batch_sendgrid_retries_after_a_20_hour_outage_is_stored_and_its_replay_changes_nothing(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    delivery_id = _seed(store_engine, clock)
    body = _events(delivery_id)
    signed_at = int(clock.now().timestamp())
    headers = _signed(body, signed_at)  # the first POST failed: our endpoint was down
    clock.advance(timedelta(hours=20))

    with _app(store_engine, tmp_path, clock, sendgrid_webhook_public_key=PUBLIC_B64) as client:
        retried = client.post("/webhooks/sendgrid", content=body, headers=headers)
        replayed = client.post("/webhooks/sendgrid", content=body, headers=headers)

    assert retried.status_code == 200 and retried.json()["stored"] == 4
    assert replayed.status_code == 200 and replayed.json()["stored"] == 0
    with store_engine.connect() as conn:
        assert blocked_reason(conn, "ann@example.com", "email", "transactional") == "spam_report"


def _post_signed(client: TestClient, clock: FakeClock, events: list[dict[str, Any]]) -> Any:
    body = json.dumps(events).encode()
    return client.post(
        "/webhooks/sendgrid", content=body, headers=_signed(body, int(clock.now().timestamp()))
    )


def test_apple_privacy_prefetches_are_recorded_as_machine_opens_and_never_counted_as_opens(
    store_engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    delivery_id = _seed(store_engine, clock)
    events = [
        {
            "email": "ann@example.com",
            "event": "open",
            "sg_machine_open": True,
            "sg_event_id": "m1",
            "timestamp": 1796112000,
            "delivery_id": str(delivery_id),
        },
        {
            "email": "ann@example.com",
            "event": "open",
            "sg_machine_open": True,
            "sg_event_id": "m2",
            "timestamp": 1796112001,
            "delivery_id": str(delivery_id),
        },
    ]
    with _app(store_engine, tmp_path, clock, sendgrid_webhook_public_key=PUBLIC_B64) as client:
        assert _post_signed(client, clock, events).status_code == 200
        [machine_only] = campaign_stats(store_engine, window_days=7)
        person = {
            "email": "ann@example.com",
            "event": "open",
            "sg_machine_open": False,
            "sg_event_id": "h1",
            "timestamp": 1796115600,
            "delivery_id": str(delivery_id),
        }
        assert _post_signed(client, clock, [person]).status_code == 200
        [with_person] = campaign_stats(store_engine, window_days=7)

    assert (machine_only.opened, machine_only.machine_opened) == (0, 1)
    assert (with_person.opened, with_person.machine_opened) == (1, 1)
    with store_engine.connect() as conn:
        kinds = conn.execute(select(DeliveryEvent.__table__.c.type).order_by("provider_event_id")).scalars()  # type: ignore[attr-defined]
        assert list(kinds) == ["open", "machine_open", "machine_open"]


@pytest.mark.parametrize(
    ("reason", "suppressed_as", "consent_withdrawn"),
    [
        ("Bounced Address", "hard_bounce", False),
        ("Spam Reporting Address", "spam_report", True),
        ("Unsubscribed Address", "unsubscribe", True),
        ("Invalid", None, False),
        ("Recipient List over Package Quota", None, False),
    ],
)
def test_a_message_dropped_for_an_address_on_sendgrid_s_lists_suppresses_it_here_too(
    store_engine: Engine,
    tmp_path: Path,
    clock: FakeClock,
    reason: str,
    suppressed_as: str | None,
    consent_withdrawn: bool,
) -> None:
    delivery_id = _seed(store_engine, clock)
    dropped = {
        "email": "Ann@Example.com",
        "event": "dropped",
        "reason": reason,
        "sg_event_id": "d1",
        "timestamp": 1796112000,
        "delivery_id": str(delivery_id),
    }
    with _app(store_engine, tmp_path, clock, sendgrid_webhook_public_key=PUBLIC_B64) as client:
        assert _post_signed(client, clock, [dropped]).status_code == 200

    with store_engine.connect() as conn:
        assert blocked_reason(conn, "ann@example.com", "email", "marketing") == suppressed_as
        [event] = conn.execute(select(DeliveryEvent.__table__)).all()  # type: ignore[attr-defined]
        open_consents = conn.execute(
            select(func.count())
            .select_from(Consent.__table__)
            .where(Consent.__table__.c.withdrawn_at.is_(None))  # type: ignore[attr-defined]
        ).scalar_one()
    assert (event.type, event.reason) == ("dropped", reason)
    assert open_consents == (0 if consent_withdrawn else 1)
