"""`tidings stats`: figures for a scripted season of sends, feedback and orders."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from engine.cli import main
from engine.feedback.stats import (
    HoldoutLift,
    Level,
    StatsKey,
    StatsRow,
    VariantVerdict,
    campaign_stats,
)
from engine.feedback.stats_csv import write_csv
from engine.store.models import Contact, Delivery, DeliveryEvent, ShopOrder

T = datetime(2026, 12, 14, 10, 0, tzinfo=UTC)


def _ids(conn: Any, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    table = model.__table__
    return [conn.execute(insert(table).returning(table.c.id), row).scalar_one() for row in rows]


def _scenario(engine: Engine) -> None:
    """Holiday offer (A/B) to a (en), b (ro-RO), c (no locale); a reminder step to a (pending) and b."""
    with engine.begin() as conn:
        a, b, c = _ids(
            conn,
            Contact,
            [
                {
                    "email": f"{n}@example.com",
                    "locale": locale,
                    "tags": [],
                    "attributes": {},
                    "orders_count": 0,
                    "total_spent": 0,
                }
                for n, locale in (("a", "en"), ("b", "ro-RO"), ("c", None))
            ],
        )

        def delivery(
            key: str,
            contact: int,
            variant: str | None,
            state: str,
            *,
            locale: str | None,
            step: str = "offer",
            reason: str | None = None,
            at: datetime = T,
        ) -> dict[str, Any]:
            return {
                "idempotency_key": key,
                "campaign_id": "holiday",
                "step_id": step,
                "contact_id": contact,
                "template": "t",
                "locale": locale,
                "variant": variant,
                "occurrence": "2026-12-14",
                "scheduled_for": at,
                "state": state,
                "reason": reason,
                "created_at": T,
                "context": {},
                "sent_at": at if state == "sent" else None,
            }

        da, db, _, _, _, _ = _ids(
            conn,
            Delivery,
            [
                delivery("1", a, "a", "sent", locale="en"),
                delivery("2", b, "b", "sent", locale="ro-RO"),
                delivery("3", c, "a", "skipped", locale=None, reason="no_consent"),
                delivery("4", c, "b", "failed", locale=None),
                delivery("5", a, None, "pending", locale="en", step="reminder"),
                delivery("6", b, None, "sent", locale="ro-RO", step="reminder", at=T + timedelta(days=1)),
            ],
        )
        events = [
            (da, "delivered", T),
            (da, "open", T + timedelta(hours=1)),
            (da, "open", T + timedelta(hours=2)),
            (da, "machine_open", T + timedelta(minutes=1)),
            (da, "click", T + timedelta(days=1)),
            (db, "delivered", T),
            (db, "machine_open", T + timedelta(minutes=1)),
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
            (b, T + timedelta(days=2), "20.00"),  # within the offer's window and the reminder's
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


def _rows(engine: Engine, **options: Any) -> dict[tuple[str, ...], StatsRow]:
    report = campaign_stats(engine, window_days=7, default_locale="en", **options)
    return {
        tuple(part for part in (r.key.step, r.key.variant, r.key.locale) if part) or ("holiday",): r
        for r in report.rows
    }


def test_stats_rows_form_a_tree_of_campaign_step_variant_and_language(store_engine: Engine) -> None:
    _scenario(store_engine)
    report = campaign_stats(store_engine, window_days=7, default_locale="en")

    shown = [(r.level.value, r.key.step, r.key.variant, r.key.locale) for r in report.rows]
    assert shown == [
        ("campaign", None, None, None),
        ("step", "offer", None, None),
        ("variant", "offer", "a", None),
        ("locale", "offer", "a", "en"),
        ("variant", "offer", "b", None),
        ("locale", "offer", "b", "en"),
        ("locale", "offer", "b", "ro"),
        ("step", "reminder", None, None),
        ("locale", "reminder", None, "en"),
        ("locale", "reminder", None, "ro"),
    ]


def test_planned_splits_into_pending_sent_failed_and_skipped(store_engine: Engine) -> None:
    _scenario(store_engine)
    rows = _rows(store_engine)

    campaign = rows[("holiday",)]
    assert (campaign.planned, campaign.pending, campaign.sent, campaign.failed, campaign.skipped) == (
        6,
        1,
        3,
        1,
        1,
    )
    assert campaign.planned == campaign.pending + campaign.sent + campaign.failed + campaign.skipped
    a = rows[("offer", "a")]
    assert (a.planned, a.sent, a.skipped, a.skipped_by_reason, a.failed) == (2, 1, 1, {"no_consent": 1}, 0)
    assert (rows[("reminder", "en")].pending, rows[("reminder", "ro")].sent) == (1, 1)


def test_machine_opens_are_not_counted_as_opens(store_engine: Engine) -> None:
    _scenario(store_engine)
    rows = _rows(store_engine)

    assert rows[("offer", "a")].opened == 1  # two human opens of one message, one machine open
    assert rows[("offer", "b")].opened == 0  # only a machine open
    assert (rows[("offer", "a")].machine_opened, rows[("holiday",)].machine_opened) == (1, 2)
    assert rows[("holiday",)].opened == 1


def test_a_language_groups_its_regional_variants_and_a_missing_locale_is_the_default(
    store_engine: Engine,
) -> None:
    _scenario(store_engine)
    rows = _rows(store_engine)

    ro = rows[("offer", "b", "ro")]
    assert (ro.planned, ro.sent, ro.conversions, ro.revenue) == (1, 1, 1, {"EUR": Decimal("20.00")})
    en = rows[("offer", "a", "en")]
    assert (en.planned, en.sent, en.skipped) == (2, 1, 1)  # a (en) and c (no locale)


def test_an_order_touched_by_two_steps_counts_once_for_the_campaign(store_engine: Engine) -> None:
    _scenario(store_engine)
    rows = _rows(store_engine)

    assert (rows[("offer",)].conversions, rows[("reminder",)].conversions) == (2, 1)
    campaign = rows[("holiday",)]
    assert (campaign.conversions, campaign.revenue) == (2, {"EUR": Decimal("50.00")})
    a = rows[("offer", "a")]
    assert (a.conversions, a.revenue) == (1, {"EUR": Decimal("30.00")})  # within 7 days of the click


def test_rates_are_of_messages_that_reached_an_inbox(store_engine: Engine) -> None:
    _scenario(store_engine)
    offer = _rows(store_engine)[("offer",)]

    rates = offer.rates
    assert (offer.sent, offer.bounced, offer.reached) == (2, 0, 2)
    assert rates.delivery == 1.0 and rates.open == 0.5 and rates.click == 0.5
    assert rates.click_to_open == 1.0 and rates.complaint == 0.5 and rates.conversion == 1.0
    assert rates.revenue_per_recipient == {"EUR": Decimal("25.00")}
    reminder = _rows(store_engine)[("reminder",)]
    assert reminder.rates.delivery is None  # no delivery event reported yet: unknown, not 0%


def test_depth_stops_the_tree_at_the_level_asked_for(store_engine: Engine) -> None:
    _scenario(store_engine)
    report = campaign_stats(store_engine, window_days=7, depth=Level.step)
    assert [r.level.value for r in report.rows] == ["campaign", "step", "step"]


def test_the_runtime_verdict_and_lift_land_on_step_and_campaign_rows(store_engine: Engine) -> None:
    _scenario(store_engine)
    verdict = VariantVerdict(metric="clicks", status="decided", winner="a", confidence=0.97)
    lift = HoldoutLift("conversion_rate", 0.12, 0.08, 0.5, 0.1, 0.9, 0.95, 40)
    asked: list[StatsKey] = []

    def verdicts(key: StatsKey) -> VariantVerdict | None:
        asked.append(key)
        return verdict if key.step == "offer" else None

    report = campaign_stats(
        store_engine, window_days=7, verdicts=verdicts, lifts=lambda cid: [lift] if cid == "holiday" else []
    )

    assert sorted(key.step or "" for key in asked) == ["offer", "reminder"]
    by_level = {(r.level.value, r.key.step): r for r in report.rows if r.level.value in {"campaign", "step"}}
    assert by_level[("step", "offer")].verdict == verdict and by_level[("step", "reminder")].verdict is None
    assert by_level[("campaign", None)].lift == lift
    assert report.as_dict()["rows"][0]["lift"]["lift"] == 0.5
    lines = list(csv.DictReader(io.StringIO(_csv(report))))
    assert lines[1]["verdict_winner"] == "a" and lines[1]["verdict_confidence"] == "0.97"
    assert lines[0]["lift"] == "0.5" and lines[2]["verdict_status"] == ""


def _csv(report: Any) -> str:
    buffer = io.StringIO()
    write_csv(report, buffer)
    return buffer.getvalue()


def test_csv_has_one_line_per_row_with_plain_fraction_rates(store_engine: Engine) -> None:
    _scenario(store_engine)
    report = campaign_stats(store_engine, window_days=7)

    lines = list(csv.DictReader(io.StringIO(_csv(report))))

    assert len(lines) == len(report.rows)
    offer = lines[1]
    assert (offer["level"], offer["step"], offer["planned"]) == ("step", "offer", "4")
    assert offer["rate_open"] == "0.5"
    assert offer["revenue_EUR"] == "50.00" and offer["revenue_per_recipient_EUR"] == "25.00"
    assert lines[2]["skipped_by_reason"] == "no_consent=1"


def _cli_env(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", str(engine.url))


def test_stats_json_prints_the_same_figures(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _scenario(sqlite_engine)
    _cli_env(sqlite_engine, tmp_path, monkeypatch)

    assert main(["stats", "holiday", "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    rows = {(r["level"], r["step"], r["variant"], r["locale"]): r for r in data["rows"]}
    a = rows[("variant", "offer", "a", None)]
    assert a["conversions"] == 1 and a["revenue"] == {"EUR": "30.00"} and a["rates"]["open"] == 1.0
    assert rows[("campaign", None, None, None)]["pending"] == 1
    assert a["verdict"] is None and rows[("campaign", None, None, None)]["lift"] is None


def test_stats_table_shows_pending_and_rates(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _scenario(sqlite_engine)
    _cli_env(sqlite_engine, tmp_path, monkeypatch)

    assert main(["stats"]) == 0

    out = capsys.readouterr().out
    assert "pending" in out and "holiday" in out and "variant a" in out and "no_consent 1" in out
    assert "1 (50.0%)" in out  # the offer step: 1 human open of 2 messages that reached an inbox


def test_stats_csv_file_is_written_and_a_bad_level_is_refused(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _scenario(sqlite_engine)
    _cli_env(sqlite_engine, tmp_path, monkeypatch)
    target = tmp_path / "stats.csv"

    assert main(["stats", "--csv", str(target), "--by", "variant"]) == 0
    lines = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [line["level"] for line in lines] == ["campaign", "step", "variant", "variant", "step"]

    assert main(["stats", "--by", "country"]) == 2
    assert "--by" in capsys.readouterr().err


def test_stats_without_messages_says_so(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_env(sqlite_engine, tmp_path, monkeypatch)
    assert main(["stats", "nothing-yet"]) == 0
    assert "No messages planned yet for nothing-yet." in capsys.readouterr().out
