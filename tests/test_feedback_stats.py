"""`tidings stats`: figures for a scripted season of sends, feedback and orders."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from engine.cli import main
from engine.feedback.stats import campaign_stats
from engine.store.models import Contact, Delivery, DeliveryEvent, ShopOrder

T = datetime(2026, 12, 14, 10, 0, tzinfo=UTC)


def _ids(conn: Any, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    table = model.__table__
    return [conn.execute(insert(table).returning(table.c.id), row).scalar_one() for row in rows]


def _scenario(engine: Engine) -> None:
    with engine.begin() as conn:
        a, b, c = _ids(
            conn,
            Contact,
            [
                {
                    "email": f"{n}@example.com",
                    "tags": [],
                    "attributes": {},
                    "orders_count": 0,
                    "total_spent": 0,
                }
                for n in "abc"
            ],
        )

        def delivery(
            key: str, contact: int, variant: str, state: str, reason: str | None = None
        ) -> dict[str, Any]:
            return {
                "idempotency_key": key,
                "campaign_id": "holiday",
                "step_id": "offer",
                "contact_id": contact,
                "template": "t",
                "variant": variant,
                "occurrence": "2026-12-14",
                "scheduled_for": T,
                "state": state,
                "reason": reason,
                "created_at": T,
                "context": {},
                "sent_at": T if state == "sent" else None,
            }

        da, db, _, _ = _ids(
            conn,
            Delivery,
            [
                delivery("1", a, "a", "sent"),
                delivery("2", b, "b", "sent"),
                delivery("3", c, "a", "skipped", "no_consent"),
                delivery("4", c, "b", "failed"),
            ],
        )
        events = [
            (da, "delivered", T),
            (da, "open", T + timedelta(hours=1)),
            (da, "open", T + timedelta(hours=2)),
            (da, "click", T + timedelta(days=1)),
            (db, "delivered", T),
            (db, "spamreport", T + timedelta(hours=3)),
        ]
        conn.execute(
            insert(DeliveryEvent.__table__),  # type: ignore[attr-defined]
            [
                {
                    "provider_event_id": f"e{i}",
                    "delivery_id": d,
                    "type": kind,
                    "occurred_at": at,
                    "payload": {},
                }
                for i, (d, kind, at) in enumerate(events)
            ],
        )
        orders = [
            (a, T - timedelta(days=1), "99.00"),  # before the send: not a conversion
            (a, T + timedelta(days=8), "30.00"),  # 8 days after the send but 7 after the click: converted
            (b, T + timedelta(days=2), "20.00"),  # within the send's window
            (b, T + timedelta(days=30), "55.00"),  # long after: not a conversion
        ]
        conn.execute(
            insert(ShopOrder.__table__),  # type: ignore[attr-defined]
            [
                {
                    "external_id": f"o{i}",
                    "contact_id": cid,
                    "placed_at": at,
                    "total": Decimal(total),
                    "currency": "EUR",
                    "items": [],
                    "status": "placed",
                }
                for i, (cid, at, total) in enumerate(orders)
            ],
        )


def test_stats_match_a_scripted_scenario_per_ab_variant(store_engine: Engine) -> None:
    _scenario(store_engine)
    a, b = campaign_stats(store_engine, window_days=7)
    assert (a.variant, a.planned, a.sent, a.skipped, a.skipped_by_reason, a.failed) == (
        "a",
        2,
        1,
        1,
        {"no_consent": 1},
        0,
    )
    assert (a.delivered, a.opened, a.clicked, a.bounced, a.complained) == (1, 1, 1, 0, 0)
    assert (a.conversions, a.revenue) == (1, {"EUR": Decimal("30.00")})
    assert (b.variant, b.planned, b.sent, b.failed, b.delivered, b.complained) == ("b", 2, 1, 1, 1, 1)
    assert (b.conversions, b.revenue) == (1, {"EUR": Decimal("20.00")})


def test_stats_json_prints_the_same_figures(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _scenario(sqlite_engine)
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", str(sqlite_engine.url))
    assert main(["stats", "holiday", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["variant"]: row for row in data["rows"]}
    assert rows["a"]["conversions"] == 1 and rows["a"]["revenue"] == {"EUR": "30.00"}
    assert rows["b"]["complained"] == 1 and rows["b"]["failed"] == 1
    assert main(["stats"]) == 0
    assert "holiday" in capsys.readouterr().out
