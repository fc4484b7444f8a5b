"""Fuzzing the public endpoints: whatever a stranger sends, the answer is never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.settings import Settings
from engine.store import make_engine, upgrade
from engine.web.public import create_public_app

TOKEN = "fuzz-token-0123456789"
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

safe_text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | safe_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=40)  # NUL and lone surrogates included: they must be refused, not crash
event_types = st.sampled_from(
    [
        "order.placed",
        "order.shipped",
        "order.problem",
        "gift_card.purchased",
        "gift_card.redeemed",
        "exchange.shipped",
        "claim.opened",
        "claim.resolved",
        "custom.x",
        "bad",
    ]
)
dates = st.sampled_from(
    ["2026-12-01T10:00:00+02:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "x"]
)
data_values = st.dictionaries(
    st.sampled_from(
        [
            "order_id",
            "total",
            "currency",
            "gift_card_id",
            "amount",
            "balance",
            "recipient_email",
            "placed_at",
            "items",
            "problem",
            "claim_id",
            "recipient_name",
            "recipient_locale",
            "send_on",
            "message",
            "tracking_url",
        ]
    ),
    st.sampled_from(
        ["O-1", "GC-1", "12.5", "-1", "1e400", "EUR", "eur", "a@b.co", "", "2026-12-01T10:00:00Z"]
        + ["2026-12-24", "2026-02-30", "javascript:alert(1)", "https://x.example/t", "a\u2028b", "x" * 600]
    )
    | json_values,
    max_size=6,
)
events = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["e1", "e2", ""]) | texts,
        "type": event_types,
        "occurred_at": dates,
        "contact": st.fixed_dictionaries(
            {"email": st.sampled_from(["a@b.co", "A@B.CO", "x", "a@b"])},
            optional={
                "locale": texts,
                "country": texts,
                "timezone": st.sampled_from(["Europe/Tallinn", "Mars/Base"]),
                "consent": st.dictionaries(st.sampled_from(["email", "x", "fax"]), json_values, max_size=2),
            },
        ),
        "data": data_values,
    }
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    engine: Engine = make_engine(f"sqlite:///{folder / 'fuzz.db'}")
    upgrade(engine)
    config = Settings(
        workspace=folder,
        secret_key="f" * 40,
        events_token=TOKEN,  # type: ignore[call-arg]
        care_token=TOKEN,
        sendgrid_webhook_unsigned="allow",
        _env_file=None,
    )
    app = create_public_app(config, engine, FakeClock(datetime(2026, 12, 1, tzinfo=UTC)))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    engine.dispose()


@FUZZ
@given(
    token=texts,
    body=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", ""]
    ),
)
def test_unsubscribe_never_fails_with_500(
    client: TestClient, token: str, body: bytes, content_type: str
) -> None:
    path = "/u/" + (quote(token, safe="") or "t")
    assert client.post(path, content=body, headers={"Content-Type": content_type}).status_code < 500
    assert client.get(path).status_code < 500


@FUZZ
@given(payload=st.one_of(events, st.lists(events, max_size=5), json_values))
def test_events_api_never_fails_with_500(client: TestClient, payload: object) -> None:
    body = json.dumps(payload).encode()  # ASCII-escaped, so lone surrogates travel as \\udXXX
    response = client.post("/events", content=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code in {200, 400, 422}, response.text


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_sendgrid_webhook_never_fails_with_500(client: TestClient, body: bytes) -> None:
    assert client.post("/webhooks/sendgrid", content=body).status_code in {200, 400}


@FUZZ
@given(
    batch=st.lists(
        st.fixed_dictionaries(
            {
                "event": st.sampled_from(["bounce", "open", "click", "spamreport"]),
                "email": st.sampled_from(["a@b.co", "", "x"]) | safe_text,
            },
            optional={
                "sg_event_id": safe_text,
                "delivery_id": json_values,
                "timestamp": json_values,
                "url": json_values,
                "type": st.sampled_from(["bounce", "blocked"]),
            },
        ),
        min_size=1,
        max_size=5,
    )
)
def test_sendgrid_events_of_any_shape_are_stored_without_500(
    client: TestClient, batch: list[dict[str, object]]
) -> None:
    assert client.post("/webhooks/sendgrid", json=batch).status_code == 200


@FUZZ
@given(
    payload=st.fixed_dictionaries(
        {},
        optional={
            "email": st.sampled_from(["a@b.co", "x", ""]) | texts | json_values,
            "percent": st.sampled_from([15, 0, -3, 20.001, "1e400", "15%", 1e300, True]) | json_values,
            "reason": texts | json_values,
            "order_id": texts | json_values,
            "agent": texts | json_values,
        },
    )
    | json_values,
    key=st.none() | texts,
)
def test_care_api_never_fails_with_500(client: TestClient, payload: object, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if key is not None and key.isprintable() and key.isascii():
        headers["Idempotency-Key"] = key
    response = client.post("/care/goodwill", content=json.dumps(payload).encode(), headers=headers)
    assert response.status_code in {400, 422}, response.text  # nobody is a customer of this empty shop
