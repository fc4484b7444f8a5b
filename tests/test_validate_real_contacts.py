"""``validate`` with a store: real contacts rehearse each campaign; ``plan`` says why nobody is reached;
a forced language is what the outbox row gets.

One small demo shop (season 2026) is made for the module; each test copies it next to its own
copy of the shipped workspace (``var/tidings.db``, the default database), as a shop runs it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from validate_support import edit, line_of, shipped, validate

from engine.cli import main
from engine.cli.context import STATE
from engine.clock import FakeClock, SystemClock
from engine.demo.load import generate_demo_shop
from engine.runtime.delivery_locale import delivery_locale
from engine.runtime.occurrences import due_occurrences
from engine.runtime.planner import plan_occurrence
from engine.settings import Settings
from engine.store import make_engine, upgrade
from engine.store.models import Contact, Delivery
from engine.workspace.loader import load_workspace

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
CONTACTS = 120
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("demo") / "tidings.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    generate_demo_shop(
        engine, contacts=CONTACTS, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    )
    engine.dispose()
    return database


@pytest.fixture
def at_now() -> Iterator[None]:
    STATE.clock = FakeClock(NOW)
    yield
    STATE.clock = SystemClock()


def with_store(root: Path, database: Path) -> Path:
    (root / "var").mkdir(exist_ok=True)
    shutil.copy(database, root / "var" / "tidings.db")
    return root


@pytest.mark.usefixtures("at_now")
def test_the_shipped_workspace_passes_with_real_contacts_and_says_so(
    tmp_path: Path, demo_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = with_store(shipped(tmp_path), demo_store)

    code, err, out = validate(root, capsys)

    assert (code, err) == (0, ""), err
    assert "no problems. Checked with" in out and "real contact messages from the database" in out


def test_without_a_database_validate_checks_the_samples_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-welcome")

    code, err, out = validate(root, capsys)

    assert (code, err) == (0, "")
    assert "real contact" not in out
    assert not (root / "var" / "tidings.db").exists()  # nothing was created looking for it


@pytest.mark.usefixtures("at_now")
def test_a_real_contact_without_an_order_breaks_what_the_sample_hides(
    tmp_path: Path, demo_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = with_store(shipped(tmp_path, "gift-card-welcome"), demo_store)
    folder = root / "templates" / "gift-card-welcome"
    for path in folder.glob("email*.mjml"):
        edit(path, "</mj-column>", "<mj-text>Your last order: {{ order.number }}</mj-text></mj-column>")
    # The sample has an order, so it renders; gift-card recipients mostly have none.
    edit(
        folder / "sample.yaml",
        "campaign:",
        "order: {id: NB-1, number: NB-1, status: delivered, placed_at: 2026-12-01T10:00:00+02:00, "
        "total: 10, currency: RON, is_gift: false, items: []}\ncampaign:",
    )

    code, err, _ = validate(root, capsys)

    assert code == 1
    template = folder / "email.mjml"
    line = line_of(template, "order.number")
    found = [entry for entry in err.splitlines() if "'None' has no attribute 'number'" in entry]
    assert found, err
    assert any(entry.startswith(f"{folder}/email") and f".mjml:{line}:1:" in entry for entry in found)
    assert all(
        "(contact " in entry and "campaign 'gift-card-welcome', step 'welcome')" in entry for entry in found
    )


@pytest.mark.usefixtures("at_now")
def test_a_flow_condition_failing_for_real_contacts_is_a_problem_at_its_line(
    tmp_path: Path, demo_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = with_store(shipped(tmp_path, "gift-card-follow-up"), demo_store)
    campaign = root / "campaigns" / "gift-card-follow-up.yaml"
    # Unguarded: every sample has an order, most real gift-card recipients have none.
    edit(campaign, '"gift_card and gift_card.balance > 0"', '"order.total > 0"')
    for name in ("gift-card-ideas", "gift-card-ideas-b", "gift-card-balance"):
        edit(
            root / "templates" / name / "sample.yaml",
            "campaign:",
            "order: {id: NB-1, number: NB-1, status: delivered, placed_at: 2026-12-01T10:00:00+02:00, "
            "total: 10, currency: RON, is_gift: false, items: []}\ncampaign:",
        )

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(campaign, "order.total > 0")
    assert f"{campaign}:{line}:9: expression 'order.total > 0' fails with a real contact: " in err
    assert "(contact " in err


@pytest.mark.usefixtures("at_now")
def test_plan_says_what_each_audience_condition_keeps_when_nobody_is_reached(
    tmp_path: Path, demo_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = with_store(shipped(tmp_path, "january-win-back"), demo_store)
    campaign = root / "campaigns" / "january-win-back.yaml"
    edit(campaign, "    - consent: email\n", "    - consent: email\n    - tag: nobody-has-this\n")
    capsys.readouterr()

    code = main(
        ["--workspace", str(root), "plan", "january-win-back", "--next", "1", "--rows", "0", "--json"]
    )

    assert code == 0
    (planned,) = json.loads(capsys.readouterr().out)["occurrences"]
    assert planned["reach"] == 0
    rows = planned["why_zero"]
    assert [row["condition"] for row in rows] == [
        "order: {placed_within: [2026-11-01, 2026-12-31]}",
        "consent: email",
        "tag: nobody-has-this",
        "not: [{order: {placed_within: [2026-12-27, 2027-01-20]}}]",
    ]
    assert rows[0]["alone"] == rows[0]["together"] > 0
    assert 0 < rows[1]["together"] <= rows[0]["together"]
    assert rows[2] == {"condition": "tag: nobody-has-this", "alone": 0, "together": 0}

    main(["--workspace", str(root), "plan", "january-win-back", "--next", "1", "--rows", "0"])
    shown = capsys.readouterr().out
    assert "Why nobody: what each audience condition keeps" in shown and "tag: nobody-has-this" in shown


def test_a_forced_language_is_the_locale_the_planner_writes(store_engine: Engine, tmp_path: Path) -> None:
    root = shipped(tmp_path, "holiday-greetings")
    edit(
        root / "campaigns" / "holiday-greetings.yaml",
        "status: active\n",
        "status: active\nlocale: [ro, et]\n",
    )
    generate_demo_shop(
        store_engine, contacts=60, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    )
    settings = Settings(workspace=root, secret_key="k" * 40)
    workspace = load_workspace(root).workspace
    campaign = workspace.campaigns["holiday-greetings"]
    (occurrence,) = due_occurrences(
        campaign, workspace.schedules, NOW, datetime(2026, 12, 31, tzinfo=UTC), default_zone=settings.zone
    )

    plan_occurrence(store_engine, workspace, campaign, occurrence, clock=FakeClock(NOW), settings=settings)
    with store_engine.connect() as conn:
        rows = conn.execute(
            select(DELIVERY.c.locale, CONTACT.c.locale).join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
        ).all()

    assert rows
    for written, own in rows:
        assert written == delivery_locale(own, ["ro", "et"])
        assert written == (own if own and own.split("-")[0].lower() in ("ro", "et") else "ro")
    assert {"ro", "et"} <= {written for written, _ in rows}


def test_the_flow_stepper_and_the_planner_choose_the_same_language() -> None:
    assert delivery_locale("ro-RO", ["ro", "et"]) == "ro-RO"
    assert delivery_locale("et", ["ro", "et"]) == "et"
    assert delivery_locale("en-US", ["ro", "et"]) == "ro"
    assert delivery_locale(None, ["et"]) == "et"
    assert delivery_locale("en", None) == "en"
