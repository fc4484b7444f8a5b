"""A/B winners and holdout lifts over a simulated season: the shipped workspace on the demo shop.

One simulation (13–23 December, 1,000 demo contacts) runs once for the module with the demo shop's
engagement rates, two of them raised as a marketer's what-if: the holiday greeting's variant B is
clicked eight times as often as A (the test slice is small on 1,000 contacts), and the last-minute
gift-card offer is clicked and bought from far more than the rest. The tests read what a user
would: the season report (JSON and HTML), the simulated store through ``tidings stats``,
``tidings plan`` on the shop, and the preview.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from test_daemon_support import DELIVERY, copy_shipped_workspace, load, settings_for

from engine.cli import main
from engine.clock import FakeClock
from engine.demo.engagement import DEMO_ENGAGEMENT
from engine.demo.load import generate_demo_shop
from engine.simulation import SimulationOptions, simulate
from engine.simulation.report import SeasonReport
from engine.store import make_engine, upgrade
from engine.web.preview import create_preview_app

CONTACTS = 1_000
RATES = replace(
    DEMO_ENGAGEMENT.with_template("holiday-greeting-b", 8.0).with_template("last-minute-gift-card", 8.0),
    order_per_click=0.6,
)


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = copy_shipped_workspace(tmp_path_factory.mktemp("ab-season"))
    source = root / "var" / "tidings.db"
    source.parent.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{source}")
    upgrade(engine)
    generate_demo_shop(
        engine, contacts=CONTACTS, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    )
    settings = settings_for(root, source, timezone="Europe/Tallinn")
    kept = root / "kept.db"
    options = SimulationOptions(
        date(2026, 12, 13),
        date(2026, 12, 23),
        root / "var" / "simulation",
        root / "var" / "sim-outbox",
        database_file=kept,
        engagement=RATES,
    )
    report = simulate(settings, engine, load(root, "Europe/Tallinn"), options)
    engine.dispose()
    html = root / "season.html"
    report.write_html(html)
    return {"root": root, "source": source, "kept": kept, "report": report, "html": html}


def greeting_test(report: SeasonReport) -> Any:
    (test,) = [t for t in report.tests if t.campaign_id == "holiday-greetings"]
    return test


def test_with_b_clicked_more_the_season_sends_b_to_the_rest(season: dict[str, Any]) -> None:
    test = greeting_test(season["report"])
    assert (test.status, test.winner) == ("decided", "holiday-greeting-b")
    assert test.confidence is not None and test.confidence >= 0.95
    arms = {arm["label"]: arm for arm in test.figures["arms"]}
    assert arms["holiday-greeting-b"]["rate"] > arms["holiday-greeting"]["rate"]
    engine = make_engine(f"sqlite:///{season['kept']}")
    with engine.connect() as conn:
        by_variant = dict(
            conn.execute(
                select(DELIVERY.c.variant, func.count())
                .where(DELIVERY.c.campaign_id == "holiday-greetings", DELIVERY.c.state == "sent")
                .group_by(DELIVERY.c.variant)
            ).all()
        )
        waiting = conn.execute(
            select(func.count()).where(
                DELIVERY.c.campaign_id == "holiday-greetings", DELIVERY.c.reason == "awaiting_test"
            )
        ).scalar_one()
    engine.dispose()
    tested = sum(arm["sent"] for arm in arms.values())
    # the rest (about 80 %) went out as B, after the decision
    assert waiting == 0
    assert by_variant["holiday-greeting-b"] > 3 * by_variant["holiday-greeting"]
    assert sum(by_variant.values()) > 4 * tested


def test_the_season_report_shows_the_verdict_in_json_and_html(season: dict[str, Any]) -> None:
    data = season["report"].as_dict()
    (test,) = [t for t in data["ab_tests"] if t["campaign"] == "holiday-greetings"]
    assert (test["status"], test["winner"], test["step"]) == ("decided", "holiday-greeting-b", "greeting")
    assert json.loads(json.dumps(data))["engagement"]["clicks"] > 0
    html = season["html"].read_text(encoding="utf-8")
    assert 'id="ab-tests"' in html and "holiday-greeting-b wins on clicks" in html


def test_a_holdout_lift_on_the_demo_shop_is_positive_when_treated_contacts_buy_more(
    season: dict[str, Any],
) -> None:
    lifts = season["report"].lifts["last-minute-gift-cards"]
    conversion = next(lift for lift in lifts if lift["metric"] == "conversion_rate")
    assert (
        conversion["holdout_contacts"] > 0
        and conversion["treated_contacts"] > 10 * conversion["holdout_contacts"]
    )
    assert conversion["treated"] > conversion["holdout"]
    # about 30 contacts are held out of 1,000: the lift is clearly positive, its interval wide
    assert conversion["lift"] > 0.5
    assert -1 < conversion["low"] < conversion["lift"] < conversion["high"]
    html = season["html"].read_text(encoding="utf-8")
    assert 'id="holdout-lifts"' in html and 'data-campaign="last-minute-gift-cards"' in html


def _cli(season: dict[str, Any], database: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(season["root"]))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("TIDINGS_TIMEZONE", "Europe/Tallinn")


def test_stats_shows_the_verdict_on_the_step_and_the_lift_on_the_campaign(
    season: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli(season, season["kept"], monkeypatch)
    assert main(["stats", "--by", "step", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    step = next(r for r in rows if (r["campaign"], r["level"]) == ("holiday-greetings", "step"))
    assert (step["verdict"]["status"], step["verdict"]["winner"]) == ("decided", "holiday-greeting-b")
    offer = next(r for r in rows if (r["campaign"], r["level"]) == ("last-minute-gift-cards", "campaign"))
    assert offer["lift"]["metric"] == "conversion_rate" and offer["lift"]["lift"] > 0
    assert offer["skipped_by_reason"]["holdout"] == offer["lift"]["holdout_contacts"]
    assert offer["planned"] == offer["pending"] + offer["sent"] + offer["failed"] + offer["skipped"]
    assert {lift["metric"] for lift in offer["lifts"]} >= {"conversion_rate", "revenue_per_recipient"}

    assert main(["stats", "--by", "step", "--csv", "-"]) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    step_line = next(r for r in lines if (r["campaign"], r["level"]) == ("holiday-greetings", "step"))
    assert (step_line["verdict_status"], step_line["verdict_winner"]) == ("decided", "holiday-greeting-b")
    campaign_line = next(
        r for r in lines if (r["campaign"], r["level"]) == ("last-minute-gift-cards", "campaign")
    )
    assert float(campaign_line["lift"]) > 0

    assert main(["stats", "--by", "step"]) == 0
    table = capsys.readouterr().out
    assert "A/B test holiday-greetings · step greeting: holiday-greeting-b wins on clicks" in table
    assert "Holdout lift last-minute-gift-cards: +" in table and "conversion rate (95% CI" in table


def test_plan_says_how_the_test_splits_the_reach_and_counts_the_holdout(
    season: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli(season, season["source"], monkeypatch)
    assert main(["plan", "holiday-greetings", "--next", "1", "--rows", "0", "--json"]) == 0
    (occurrence,) = json.loads(capsys.readouterr().out)["occurrences"]
    (test,) = occurrence["ab_tests"]
    assert (test["share"], test["by"], test["decide_after_seconds"]) == (0.2, "clicks", 4 * 3600)
    assert (
        test["test"] + test["rest"] == occurrence["reach"]
        and 0.15 < test["test"] / occurrence["reach"] < 0.25
    )
    assert main(["plan", "holiday-greetings", "--next", "1", "--rows", "0"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert (
        f"A/B test: 20% first, the winner by clicks after 4h: {test['test']:,} get the variants first" in text
    )

    assert main(["plan", "last-minute-gift-cards", "--next", "1", "--rows", "3", "--json"]) == 0
    (offer,) = json.loads(capsys.readouterr().out)["occurrences"]
    assert offer["holdout"] > 0 and offer["excluded"]["holdout"] == offer["holdout"]
    assert offer["holdout_share"] == 0.05


def test_the_preview_shows_the_verdict_for_the_step_sending_the_template(season: dict[str, Any]) -> None:
    engine = make_engine(f"sqlite:///{season['kept']}")
    settings = settings_for(season["root"], season["kept"], timezone="Europe/Tallinn")
    app = create_preview_app(
        settings, engine=engine, clock=FakeClock(datetime(2026, 12, 20, tzinfo=UTC)), watch=False
    )
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        page = client.get("/templates/holiday-greeting-b")
        data = client.get("/api/templates/holiday-greeting-b").json()
        plain = client.get("/templates/win-back").text
    engine.dispose()
    assert page.status_code == 200
    assert "A/B test: 20% first, the winner by clicks after 4h" in page.text
    assert "holiday-greeting-b wins on clicks" in page.text and "this template" in page.text
    (test,) = data["ab_tests"]
    assert (test["campaign"], test["step"], test["verdict"]["winner"]) == (
        "holiday-greetings",
        "greeting",
        "holiday-greeting-b",
    )
    assert test["verdict"]["this_template_won"] is True
    assert 'class="ab-test"' not in plain
