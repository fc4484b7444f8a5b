"""Campaign ``priority``: a capped slot goes to the higher-priority message, and ``plan`` says so first.

The gate (pure and through the dispatcher, on SQLite and PostgreSQL), then ``plan``'s forecast set
against what the planner and the dispatcher then do over the same days.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, true
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_delivery, delivery_rows
from test_dispatch_support import campaign, workspace, write_templates
from test_planner_support import add_contacts

from engine.channels.outbox import OutboxEmailChannel
from engine.cli import main
from engine.cli.context import STATE
from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.render.renderer import Renderer
from engine.runtime.collisions import cap_forecast
from engine.runtime.controls import pause
from engine.runtime.dispatcher import Dispatcher
from engine.runtime.dry_run import dry_run
from engine.runtime.occurrences import due_occurrences
from engine.runtime.planner import draft_plan, plan_occurrence
from engine.runtime.policy import (
    CampaignRules,
    FrequencyCap,
    RecipientFacts,
    Rival,
    decide,
    reason_group,
)
from engine.settings import Settings
from engine.simulation.run import SimulationOptions, simulate
from engine.store import make_engine, upgrade
from engine.store.models import Delivery
from engine.workspace.loader import Workspace, load_workspace
from engine.workspace.models import Campaign

NOW = datetime(2026, 12, 10, 10, 0, tzinfo=UTC)
WEEK = FrequencyCap(2, timedelta(days=7))
PROMOTION = CampaignRules("promo", frequency_cap=WEEK)
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


def consenting(**kwargs: Any) -> RecipientFacts:
    return RecipientFacts(
        contact_id=1, email="a@example.com", consented_channels=frozenset({"email"}), **kwargs
    )


# --- the gate, pure --------------------------------------------------------------------------------


def test_a_promotion_gives_the_last_free_slot_to_a_reminder_due_tomorrow() -> None:
    reminder = Rival("reminders", 10, NOW + timedelta(days=1), WEEK)
    contact = consenting(marketing_sends=[NOW - timedelta(days=2)], rivals=[reminder])
    decision = decide(PROMOTION, contact, channel="email", now=NOW)
    assert (decision.action, decision.reason) == ("skip", "frequency_cap:yielded_to:reminders")
    assert reason_group(decision.reason) == "frequency_cap"


def test_a_promotion_keeps_its_slot_while_the_reminder_still_fits() -> None:
    reminder = Rival("reminders", 10, NOW + timedelta(days=1), WEEK)
    assert decide(PROMOTION, consenting(rivals=[reminder]), channel="email", now=NOW).sends


def test_a_reminder_due_after_the_promotion_stops_counting_takes_nothing() -> None:
    later = Rival("reminders", 10, NOW + timedelta(days=8), WEEK)
    contact = consenting(marketing_sends=[NOW - timedelta(days=2)], rivals=[later])
    assert decide(PROMOTION, contact, channel="email", now=NOW).sends


def test_equal_priority_is_first_come_first_served() -> None:
    peer = Rival("greetings", 0, NOW + timedelta(days=1), WEEK)
    contact = consenting(marketing_sends=[NOW - timedelta(days=2)], rivals=[peer])
    assert decide(PROMOTION, contact, channel="email", now=NOW).sends


# --- the gate, through the dispatcher --------------------------------------------------------------


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        workspace=tmp_path,
        secret_key="p" * 40,
        public_url="https://shop.example.com",
        outbox_dir=tmp_path / "outbox",
        concurrency=1,
        email_rate_per_second=10_000,
    )


def _dispatcher(engine: Engine, settings: Settings, clock: FakeClock, ws: Workspace) -> Dispatcher:
    write_templates(settings.workspace_dir)
    return Dispatcher(
        engine,
        settings,
        clock,
        Renderer(settings, settings.workspace_dir / "templates"),
        OutboxEmailChannel.from_settings(settings, now=clock.now),
        None,
        ws,
    )


def _capped(campaign_id: str, priority: int = 0, **overrides: Any) -> Campaign:
    limits = {"frequency_cap": {"max": 2, "per": "7d"}}
    return campaign(campaign_id, priority=priority, limits=limits, timezone="Europe/Tallinn", **overrides)


def _one_contact(engine: Engine, now: datetime) -> int:
    add_contacts(
        engine, [{"id": 1, "email": "kadri@example.ee", "timezone": "Europe/Tallinn", "country": "EE"}]
    )
    add_delivery(engine, 1, now=now, campaign="earlier", state="sent", sent_at=now - timedelta(days=2))
    return 1


def test_a_higher_priority_reminder_due_tomorrow_wins_the_last_slot_over_a_promotion_due_today(
    store_engine: Engine, tmp_path: Path
) -> None:
    clock = FakeClock(NOW)
    contact = _one_contact(store_engine, NOW)
    promo = add_delivery(store_engine, contact, now=NOW, campaign="promo")
    reminder = add_delivery(
        store_engine, contact, now=NOW, campaign="reminders", scheduled_for=NOW + timedelta(days=1)
    )
    ws = workspace(_capped("promo"), _capped("reminders", priority=10))
    with _dispatcher(store_engine, _settings(tmp_path), clock, ws) as dispatcher:
        dispatcher.drain()
        clock.advance(timedelta(days=1))
        dispatcher.drain()
    rows = delivery_rows(store_engine)
    assert (rows[promo].state, rows[promo].reason) == ("skipped", "frequency_cap:yielded_to:reminders")
    assert rows[reminder].state == "sent"


def test_a_paused_reminder_takes_no_slot_from_a_promotion(store_engine: Engine, tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    contact = _one_contact(store_engine, NOW)
    promo = add_delivery(store_engine, contact, now=NOW, campaign="promo")
    reminder = add_delivery(
        store_engine, contact, now=NOW, campaign="reminders", scheduled_for=NOW + timedelta(days=1)
    )
    pause(store_engine, "reminders", clock)
    ws = workspace(_capped("promo"), _capped("reminders", priority=10))
    with _dispatcher(store_engine, _settings(tmp_path), clock, ws) as dispatcher:
        dispatcher.drain()
    rows = delivery_rows(store_engine)
    assert (rows[promo].state, rows[promo].reason) == ("sent", None)
    assert rows[reminder].state == "pending"


def test_equal_priority_keeps_first_come_first_served_at_send_time(
    store_engine: Engine, tmp_path: Path
) -> None:
    clock = FakeClock(NOW)
    contact = _one_contact(store_engine, NOW)
    promo = add_delivery(store_engine, contact, now=NOW, campaign="promo")
    reminder = add_delivery(
        store_engine, contact, now=NOW, campaign="reminders", scheduled_for=NOW + timedelta(days=1)
    )
    ws = workspace(_capped("promo"), _capped("reminders"))
    with _dispatcher(store_engine, _settings(tmp_path), clock, ws) as dispatcher:
        dispatcher.drain()
        clock.advance(timedelta(days=1))
        dispatcher.drain()
    rows = delivery_rows(store_engine)
    assert rows[promo].state == "sent"
    assert (rows[reminder].state, rows[reminder].reason) == ("skipped", "frequency_cap")


@pytest.mark.parametrize(("priority", "winner"), [(10, "reminders"), (0, "promo")])
def test_in_one_batch_the_higher_priority_row_is_gated_first(
    store_engine: Engine, tmp_path: Path, priority: int, winner: str
) -> None:
    clock = FakeClock(NOW)
    contact = _one_contact(store_engine, NOW)
    # the promotion was planned first (lower id) and both are due now: one slot is left
    add_delivery(store_engine, contact, now=NOW, campaign="promo")
    add_delivery(store_engine, contact, now=NOW, campaign="reminders")
    ws = workspace(_capped("promo"), _capped("reminders", priority=priority))
    with _dispatcher(store_engine, _settings(tmp_path), clock, ws) as dispatcher:
        dispatcher.drain()
    outcome = {row.campaign_id: (row.state, row.reason) for row in delivery_rows(store_engine).values()}
    loser = "promo" if winner == "reminders" else "reminders"
    assert outcome[winner] == ("sent", None)
    assert outcome[loser] == ("skipped", "frequency_cap")


# --- plan's forecast against what then happens ----------------------------------------------------


def _tagged(tag: str) -> dict[str, Any]:
    return {"where": [{"consent": "email"}, {"tag": tag}]}


def _play(engine: Engine, ws: Workspace, settings: Settings, clock: FakeClock, until: datetime) -> None:
    """The daemon's work, hour by hour: plan each occurrence when it fires, send what is due."""
    fires = sorted(
        (occurrence.fire_at, key, occurrence)
        for key, found in ws.campaigns.items()
        for occurrence in due_occurrences(found, ws.schedules, clock.now(), until, default_zone=settings.zone)
    )
    with _dispatcher(engine, settings, clock, ws) as dispatcher:
        while clock.now() < until:
            for fire_at, key, occurrence in fires:
                if fire_at <= clock.now():
                    plan_occurrence(engine, ws, ws.campaigns[key], occurrence, clock=clock, settings=settings)
            dispatcher.drain()
            clock.advance(timedelta(hours=1))


def _taker(engine: Engine, row: Any) -> str:
    """Whose message took the slot of a capped row: the one it yielded to, else the last sent before it."""
    if row.reason.startswith("frequency_cap:yielded_to:"):
        return str(row.reason.rsplit(":", 1)[1])
    with engine.connect() as conn:
        return str(
            conn.execute(
                select(DELIVERY.c.campaign_id)
                .where(
                    DELIVERY.c.contact_id == row.contact_id,
                    DELIVERY.c.state == "sent",
                    DELIVERY.c.category == "marketing",
                    DELIVERY.c.sent_at <= row.updated_at,
                )
                .order_by(DELIVERY.c.sent_at.desc())
                .limit(1)
            ).scalar_one()
        )


def test_plan_forecasts_who_the_cap_holds_back_and_whose_message_takes_the_slot(
    store_engine: Engine, tmp_path: Path
) -> None:
    start = datetime(2026, 12, 9, 0, 0, tzinfo=UTC)
    clock = FakeClock(start)
    tallinn = {"timezone": "Europe/Tallinn", "locale": "et"}
    add_contacts(
        store_engine,
        [
            {"id": 1, "email": "sent-before@example.ee", "country": "EE", "tags": ["greet"], **tallinn},
            {
                "id": 2,
                "email": "reminded@example.ee",
                "country": "EE",
                "tags": ["greet", "remind"],
                **tallinn,
            },
            {"id": 3, "email": "not-greeted@example.ro", "country": "RO", "tags": ["remind"], **tallinn},
        ],
    )
    add_delivery(
        store_engine, 1, now=start, campaign="earlier", state="sent", sent_at=start - timedelta(days=1)
    )
    ws = workspace(
        _capped("greetings", trigger={"at": "2026-12-10T10:00"}, audience=_tagged("greet")),
        _capped("promo", trigger={"at": "2026-12-11T10:00"}),
        _capped("reminders", priority=10, trigger={"at": "2026-12-12T09:00"}, audience=_tagged("remind")),
        root=tmp_path,
    )
    settings = _settings(tmp_path)
    # The reminders were planned early: they wait in the outbox; the greetings are not planned yet.
    (reminders,) = due_occurrences(
        ws.campaigns["reminders"], ws.schedules, start, start + timedelta(days=9), default_zone=settings.zone
    )
    plan_occurrence(store_engine, ws, ws.campaigns["reminders"], reminders, clock=clock, settings=settings)
    (promo,) = due_occurrences(
        ws.campaigns["promo"], ws.schedules, start, start + timedelta(days=9), default_zone=settings.zone
    )
    with store_engine.connect() as conn:
        forecast = dry_run(conn, ws, ws.campaigns["promo"], promo, settings=settings, now=start, sample=5)
    assert forecast.excluded["frequency_cap"] == 2
    assert forecast.capped_by == {"greetings": 1, "reminders": 1}
    assert forecast.reach == 1
    assert [row.email for row in forecast.first_rows] == ["not-greeted@example.ro"]

    _play(store_engine, ws, settings, clock, until=datetime(2026, 12, 13, tzinfo=UTC))
    rows = [row for row in delivery_rows(store_engine).values() if row.campaign_id == "promo"]
    capped = [row for row in rows if reason_group(row.reason) == "frequency_cap"]
    assert {row.contact_id: row.reason for row in capped} == {
        1: "frequency_cap",
        2: "frequency_cap:yielded_to:reminders",
    }
    takers: dict[str, int] = {}
    for row in capped:
        taker = _taker(store_engine, row)
        takers[taker] = takers.get(taker, 0) + 1
    assert takers == forecast.capped_by
    assert [row.contact_id for row in rows if row.state == "sent"] == [3]


# --- the case, on the shipped workspace -----------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
#: What the marketer in the issue added to the shipped workspace: a last promotion before Christmas.
LAST_CHANCE = """\
name: Last chance for Christmas delivery
status: active
category: marketing
topic: offers
timezone: Europe/Tallinn
audience:
  segment: holiday-shoppers
  where:
    - consent: email
trigger:
  at: {time: 2026-12-20T10:00, local_time: true}
steps:
  - id: last-chance
    send: {channel: email, template: holiday-greeting}
limits:
  frequency_cap: {max: 3, per: 7d}
"""


@pytest.mark.slow
def test_plan_names_the_campaign_that_takes_the_last_chance_slot_and_the_season_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, tmp_path / part)
    (tmp_path / "campaigns" / "last-chance-christmas.yaml").write_text(LAST_CHANCE)
    database = tmp_path / "var" / "tidings.db"
    database.parent.mkdir()
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    start = datetime(2026, 12, 12, tzinfo=UTC)
    generate_demo_shop(engine, contacts=400, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "p" * 40)
    monkeypatch.setattr(STATE, "clock", FakeClock(start))
    monkeypatch.setattr(STATE, "_settings", None)
    monkeypatch.setattr(STATE, "workspace", None)

    assert main(["--workspace", str(tmp_path), "plan", "last-chance-christmas", "--rows", "0", "--json"]) == 0
    (planned,) = json.loads(capsys.readouterr().out)["occurrences"]
    assert planned["capped_by"], "the demo shop's holiday shoppers have used their slots by December 20"
    assert sum(planned["capped_by"].values()) == planned["excluded"]["frequency_cap"]
    assert main(["--workspace", str(tmp_path), "plan", "last-chance-christmas", "--rows", "0"]) == 0
    text = capsys.readouterr().out
    takers = ", ".join(f"{name} {count:,}" for name, count in planned["capped_by"].items())
    assert f"capped: {planned['excluded']['frequency_cap']:,} (slot taken by {takers})" in text

    settings = Settings(workspace=tmp_path, database_url=f"sqlite:///{database}", secret_key="p" * 40)
    ws = load_workspace(tmp_path, default_timezone=settings.timezone).workspace
    last_chance = ws.campaigns["last-chance-christmas"]
    (occurrence,) = due_occurrences(
        last_chance, ws.schedules, start, start + timedelta(days=14), default_zone=settings.zone
    )
    with engine.connect() as conn:
        draft = draft_plan(conn, ws, last_chance, occurrence, settings=settings, now=start)
        forecast = cap_forecast(conn, ws, draft, true(), settings=settings, now=start)
    assert dict(forecast.by) == planned["capped_by"]

    kept = tmp_path / "season.db"
    options = SimulationOptions(
        start=start.date(),
        end=datetime(2026, 12, 21).date(),
        work_dir=tmp_path / "sim",
        outbox_dir=tmp_path / "sim" / "outbox",
        database_file=kept,
        engagement=None,
    )
    simulate(settings, engine, ws, options)
    season = make_engine(f"sqlite:///{kept}")
    rows = [row for row in delivery_rows(season).values() if row.campaign_id == "last-chance-christmas"]
    held = {
        row.contact_id for row in rows if (row.reason or "").startswith("held:")
    }  # open claims: not forecast
    happened = {
        row.contact_id: _taker(season, row) for row in rows if reason_group(row.reason) == "frequency_cap"
    }
    foreseen = {contact: taker for contact, taker in forecast.held.items() if contact not in held}
    assert happened and happened == foreseen
    season.dispose()
    engine.dispose()
