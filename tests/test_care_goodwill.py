"""Agents with coupons: ``POST /care/goodwill``, ``tidings care goodwill``, the apology, the export.

The API is exercised through the real public app; the apology goes out through the real
dispatcher into the file outbox, in the customer's language, with the code the answer gave.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from care_support import REPO, Shop, customer, open_shop, outbox, public_client, shipped_workspace
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from test_e2e_cli import run

from engine.cli.context import STATE
from engine.clock import FakeClock
from engine.runtime.coupons import issue_coupon
from engine.store import make_engine, upgrade
from engine.store.models import Coupon, Delivery, Suppression
from engine.web.public import create_public_app

NOW = datetime(2027, 1, 6, 10, 15, tzinfo=UTC)
TOKEN = "care-token-" + "x" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUPON = Coupon.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ASK = {"email": "ioana@example.com", "percent": 15, "reason": "late delivery", "order_id": "NB-10977"}


@pytest.fixture
def shop(store_engine: Engine, tmp_path: Path) -> Iterator[Shop]:
    opened = open_shop(store_engine, tmp_path, FakeClock(NOW), care_token=TOKEN)
    customer(
        store_engine,
        "ioana@example.com",
        locale="ro",
        country="RO",
        timezone="Europe/Bucharest",
        order="NB-10977",
        now=NOW,
    )
    customer(store_engine, "ann@example.com", order="NB-1", now=NOW)
    yield opened
    opened.close()


@pytest.fixture
def client(shop: Shop) -> Iterator[TestClient]:
    with public_client(shop) as test_client:
        yield test_client


def coupons(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(COUPON).order_by(COUPON.c.id)))


def test_without_a_care_token_the_api_answers_503(store_engine: Engine, tmp_path: Path) -> None:
    shop = open_shop(store_engine, tmp_path, FakeClock(NOW))
    try:
        with TestClient(
            create_public_app(shop.settings, shop.engine, shop.clock, workspace=shipped_workspace)
        ) as c:
            answer = c.post("/care/goodwill", json=ASK, headers=AUTH)
    finally:
        shop.close()
    assert answer.status_code == 503 and "TIDINGS_CARE_TOKEN" in answer.json()["error"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_a_missing_or_wrong_token_gets_401_and_gives_nothing(
    shop: Shop, client: TestClient, headers: dict[str, str]
) -> None:
    answer = client.post("/care/goodwill", json=ASK, headers=headers)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert coupons(shop.engine) == []


def test_more_than_an_agent_may_give_is_refused_with_a_clear_422(shop: Shop, client: TestClient) -> None:
    answer = client.post("/care/goodwill", json={**ASK, "percent": 25}, headers=AUTH)
    assert answer.status_code == 422
    body = answer.json()
    assert body["errors"] == [
        {
            "field": "percent",
            "message": "25% is more than an agent may give: at most 20% (TIDINGS_CARE_MAX_PERCENT)",
        }
    ]
    assert coupons(shop.engine) == [] and shop.deliveries() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "nobody@example.com"}, "email"),
        ({"order_id": "NB-1"}, "order_id"),  # Ann's order, not Ioana's
        ({"order_id": "NB-404"}, "order_id"),
        ({"percent": 0}, "percent"),
        ({"percent": 12.345}, "percent"),
        ({"percent": "lots"}, "percent"),
        ({"reason": "  "}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": "late\ndelivery"}, "reason"),
        ({"email": "ioana@example.com, ann@example.com"}, "email"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_a_request_that_cannot_be_honoured_is_422_naming_the_field(
    shop: Shop, client: TestClient, change: dict[str, Any], field: str
) -> None:
    answer = client.post("/care/goodwill", json={**ASK, **change}, headers=AUTH)
    assert answer.status_code == 422
    assert [error["field"] for error in answer.json()["errors"]] == [field]
    assert coupons(shop.engine) == []


def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    answer = client.post(
        "/care/goodwill", content=b"{nope", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400


def test_the_coupon_is_recorded_and_the_apology_goes_out_in_the_customers_language(
    shop: Shop, client: TestClient
) -> None:
    answer = client.post("/care/goodwill", json={**ASK, "agent": "Kadri"}, headers=AUTH)
    assert answer.status_code == 201
    body = answer.json()
    code = body["coupon"]["code"]
    assert code.startswith("CARE-") and len(code) == 11 and body["coupon"]["percent"] == 15
    # valid through the end of the 30th day, in the customer's zone
    assert body["coupon"]["expires_at"] == "2027-02-05T21:59:00+00:00"
    assert (body["issued_by"], body["reason"], body["order_id"]) == (
        "care-api (Kadri)",
        "late delivery",
        "NB-10977",
    )
    (row,) = coupons(shop.engine)
    assert (row.code, row.percent, row.issued_by, row.reason, row.order_id) == (
        code,
        Decimal("15.00"),
        "care-api (Kadri)",
        "late delivery",
        "NB-10977",
    )
    (message,) = shop.deliveries()
    assert (message.campaign_id, message.category, message.template, message.state) == (
        "care-goodwill",
        "transactional",
        "goodwill-apology",
        "pending",
    )
    assert message.id == body["message"]["delivery_id"] and message.scheduled_for == NOW
    shop.tick()  # the daemon's next tick: the dispatcher sends it
    (mail,) = outbox(shop.settings)
    assert mail.to == "Ioana <ioana@example.com>"
    assert mail.subject == "Despre comanda NB-10977: 15% reducere la următoarea comandă, cu scuzele noastre"
    assert code in mail.text and "5 februarie 2027" in mail.text
    assert mail.campaign == "care-goodwill" and "List-Unsubscribe" not in mail.headers
    assert shop.deliveries()[0].state == "sent"


def test_a_retry_with_the_same_idempotency_key_returns_the_same_coupon(
    shop: Shop, client: TestClient
) -> None:
    headers = {**AUTH, "Idempotency-Key": "ticket-4411"}
    first = client.post("/care/goodwill", json=ASK, headers=headers)
    again = client.post("/care/goodwill", json=ASK, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["coupon"] == first.json()["coupon"] and again.json()["repeated"] is True
    assert len(coupons(shop.engine)) == 1 and len(shop.deliveries()) == 1
    other = client.post("/care/goodwill", json={**ASK, "percent": 20}, headers=headers)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "idempotency_key"
    fresh = client.post("/care/goodwill", json=ASK, headers={**AUTH, "Idempotency-Key": "ticket-4412"})
    assert fresh.status_code == 201 and fresh.json()["coupon"]["code"] != first.json()["coupon"]["code"]
    assert len(coupons(shop.engine)) == 2


def test_an_apology_to_a_hard_bounced_address_is_skipped_and_says_so(shop: Shop, client: TestClient) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            insert(Suppression.__table__),  # type: ignore[attr-defined]
            {"email": "ioana@example.com", "channel": "all", "reason": "hard_bounce", "created_at": NOW},
        )
    assert client.post("/care/goodwill", json=ASK, headers=AUTH).status_code == 201
    shop.tick()
    (message,) = shop.deliveries()
    assert (message.state, message.reason) == ("skipped", "suppressed:hard_bounce")
    assert outbox(shop.settings) == []


# --- the command line and the export ---------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, tmp_path / part)
    database = tmp_path / "var" / "tidings.db"
    database.parent.mkdir()
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    ioana = customer(
        engine, "ioana@example.com", locale="ro", country="RO", timezone=None, order="NB-10977", now=NOW
    )
    with engine.begin() as conn:
        issue_coupon(
            conn,
            campaign_id="january-apology",
            coupon_id="apology",
            contact_id=ioana,
            occurrence="2027-01-05T10:00",
            percent=15,
            prefix="SORRY",
            now=NOW,
        )
    engine.dispose()
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "TIDINGS_WORKSPACE": str(tmp_path),
        "TIDINGS_DATABASE_URL": f"sqlite:///{database}",
        "TIDINGS_SECRET_KEY": "s" * 40,
        "TIDINGS_EMAIL_CHANNEL": "outbox",
        "TIDINGS_OUTBOX_DIR": str(tmp_path / "outbox"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(STATE, "_settings", None)
    monkeypatch.setattr(STATE, "_engine", None)
    monkeypatch.setattr(STATE, "workspace", None)
    monkeypatch.setattr(STATE, "clock", FakeClock(NOW))
    return tmp_path


def test_the_care_command_gives_the_coupon_and_sends_the_apology_at_once(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "care", "goodwill", "IOANA@example.com", "--percent", "15", "--reason", "late delivery",
        "--order", "NB-10977", "--agent", "kadri", "--json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    answer = json.loads(out)
    assert answer["message"]["state"] == "sent" and answer["issued_by"] == "kadri"
    (mail,) = list((cli / "outbox" / "email").rglob("*.eml"))
    assert answer["coupon"]["code"] in mail.read_text(encoding="utf-8", errors="replace")


def test_the_care_command_refuses_more_than_the_cap_in_one_line_with_exit_2(
    cli: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_CARE_MAX_PERCENT", "10")
    code, out, err = run(
        capsys, "care", "goodwill", "ioana@example.com", "--percent", "15", "--reason", "late"
    )
    assert code == 2 and out == ""
    assert err.strip() == (
        "tidings: 15% is more than an agent may give: at most 10% (TIDINGS_CARE_MAX_PERCENT)"
    )
    assert not (cli / "outbox").exists()


def test_export_coupons_lists_every_code_with_who_why_and_which_order(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "care", "goodwill", "ioana@example.com", "--percent", "12.5", "--reason", "damaged parcel",
        "--order", "NB-10977", "--agent", "kadri")  # fmt: skip
    code, _, err = run(capsys, "export", "coupons", "coupons.csv")
    assert code == 0 and "exported 2 coupons" in err
    with open(cli / "coupons.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "code", "percent", "expires_at", "email", "campaign_id", "coupon_id", "issued_by", "reason",
        "order_id", "created_at",
    ]  # fmt: skip
    flow, agent = rows
    assert (
        flow["code"].startswith("SORRY-")
        and flow["campaign_id"] == "january-apology"
        and flow["issued_by"] == ""
    )
    assert (agent["percent"], agent["email"], agent["campaign_id"], agent["issued_by"]) == (
        "12.5",
        "ioana@example.com",
        "care-goodwill",
        "kadri",
    )
    assert (agent["reason"], agent["order_id"]) == ("damaged parcel", "NB-10977")
    assert agent["expires_at"].startswith("2027-02-05T")
    run(capsys, "export", "coupons", "coupons.jsonl")
    lines = [json.loads(line) for line in (cli / "coupons.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["code"] for line in lines] == [flow["code"], agent["code"]]


def test_import_does_not_take_coupons(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli / "coupons.csv").write_text("code\n", encoding="utf-8")
    code, _, err = run(capsys, "import", "coupons", "coupons.csv")
    assert code == 2 and "coupons" in err
