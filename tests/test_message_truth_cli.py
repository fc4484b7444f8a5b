"""The shipped workspace as a marketer checks it before December: plan, render --contact, next sends.

``plan shipping-deadlines`` renders its first rows without false errors (each contact's own cutoff,
decided by the planner); ``render --contact --campaign --json`` shows a US customer the US cutoff
(not sample.yaml's Estonian carrier); next sends come from the campaign's own audience, in the zone of
the first contact due; ``simulate --keep`` keeps its store.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from engine.cli import main
from engine.cli.context import STATE
from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.runtime.upcoming import next_sends
from engine.settings import Settings
from engine.store import make_engine, upgrade
from engine.store.models import Contact, Delivery
from engine.workspace.loader import load_workspace

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    engine = make_engine(f"sqlite:///{folder / 'tidings.db'}")
    upgrade(engine)
    generate_demo_shop(engine, contacts=150, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()
    return folder / "tidings.db"


@pytest.fixture
def shop(tmp_path: Path, demo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, tmp_path / part)
    (tmp_path / "var").mkdir()
    shutil.copy(demo, tmp_path / "var" / "tidings.db")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "k" * 40)
    monkeypatch.chdir(tmp_path)
    STATE._settings = None
    STATE.workspace = None
    STATE.clock = FakeClock(NOW)
    yield tmp_path
    STATE.close()
    STATE._settings = None
    STATE.workspace = None
    from engine.clock import SystemClock

    STATE.clock = SystemClock()


def _contact(root: Path, country: str) -> tuple[int, str]:
    engine = make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}")
    with engine.connect() as conn:
        row = conn.execute(
            select(CONTACT.c.id, CONTACT.c.email)
            .where(CONTACT.c.country == country)
            .order_by(CONTACT.c.id)
            .limit(1)
        ).one()
    engine.dispose()
    return int(row.id), str(row.email)


def test_plan_renders_every_first_row_of_the_order_by_reminders_without_false_errors(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(shop), "plan", "shipping-deadlines", "--rows", "5", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    rows = [row for occurrence in report["occurrences"] for row in occurrence["first_rows"]]
    assert rows
    for row in rows:
        assert row["renders"] == "ok"
        assert row["subject"].startswith("Order by") or row["subject"]  # every locale has its own words
        assert row["facts"]["cutoff"]["deliver_before"] == "2026-12-24"
    assert all(o["occurrence"].endswith("@2026-12-24") for o in report["occurrences"])


def test_render_for_a_us_customer_shows_their_own_us_cutoff(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contact_id, email = _contact(shop, "US")
    code = main(
        [
            "--workspace",
            str(shop),
            "render",
            "shipping-reminder",
            "--contact",
            email,
            "--campaign",
            "shipping-deadlines",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rendered = json.loads(captured.out)
    assert rendered["facts"]["cutoff"]["country"] == "US"
    assert rendered["facts"]["cutoff"]["timezone"] == "America/New_York"
    assert "Omniva" not in rendered["text"]
    assert rendered["facts"]["cutoff"]["carrier"] in rendered["text"]
    assert rendered["occurrence"].startswith("shipping_cutoff-")
    assert rendered["send_at"] is not None
    # The send time is told in the contact's own zone, as a time to come (not "sent").
    assert re.search(r"note: its send time: 2026-12-\d\d 09:00 EST \(America/New_York\)", captured.err)


def test_a_forced_language_is_what_plan_and_render_for_a_contact_show(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign = shop / "campaigns" / "shipping-deadlines.yaml"
    campaign.write_text(
        campaign.read_text(encoding="utf-8").replace("topic: reminders\n", "topic: reminders\nlocale: ro\n"),
        encoding="utf-8",
    )
    _, email = _contact(shop, "US")

    code = main(["--workspace", str(shop), "plan", "shipping-deadlines", "--rows", "5", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    rows = [row for occurrence in report["occurrences"] for row in occurrence["first_rows"]]
    # everyone gets Romanian; a contact whose own locale is a Romanian one (ro-RO) keeps it
    assert rows and all(row["locale"].split("-")[0] == "ro" for row in rows)
    groups = [group for o in report["occurrences"] for group in o["breakdown"]]
    assert {g["country"] for g in groups} >= {"US", "EE"}
    assert all(g["locale"].split("-")[0] == "ro" for g in groups)

    code = main(
        [
            "--workspace",
            str(shop),
            "render",
            "shipping-reminder",
            "--contact",
            email,
            "--campaign",
            "shipping-deadlines",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    forced = json.loads(captured.out)
    args = ["--workspace", str(shop), "render", "shipping-reminder", "--contact", email]
    code = main([*args, "--campaign", "shipping-deadlines", "--locale", "ro", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    romanian = json.loads(captured.out)
    assert forced["locale"] == "ro"
    assert (forced["subject"], forced["text"]) == (romanian["subject"], romanian["text"])


def test_render_at_a_moment_renders_the_send_of_that_moment(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, email = _contact(shop, "EE")
    code = main(
        [
            "--workspace",
            str(shop),
            "render",
            "shipping-reminder",
            "--contact",
            email,
            "--campaign",
            "shipping-deadlines",
            "--at",
            "2026-12-16T09:00",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rendered = json.loads(captured.out)
    assert rendered["occurrence"] == "shipping_cutoff-2d@2026-12-24"
    assert rendered["rendered_at"].startswith("2026-12-16T09:00")


def test_render_of_a_coupon_flow_marks_its_placeholder_code(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(f"sqlite:///{shop / 'var' / 'tidings.db'}")
    workspace = load_workspace(shop).workspace
    apology = workspace.campaigns["january-apology"]
    settings = Settings(workspace=shop, secret_key="k" * 40)
    from engine.runtime.dry_run import dry_run
    from engine.runtime.occurrences import due_occurrences

    occurrence = due_occurrences(
        apology, workspace.schedules, NOW, datetime(2027, 2, 1, tzinfo=UTC), default_zone=settings.zone
    )[0]
    with engine.connect() as conn:
        reached = dry_run(
            conn, workspace, apology, occurrence, settings=settings, now=NOW, sample=1
        ).first_rows
    engine.dispose()
    assert reached, "the demo shop has a customer with a problem order"
    code = main(
        [
            "--workspace",
            str(shop),
            "render",
            "apology-coupon",
            "--contact",
            str(reached[0].contact_id),
            "--campaign",
            "january-apology",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rendered = json.loads(captured.out)
    assert rendered["coupon_placeholder"] is True
    assert "SORRY-PREVIEW-CODE" in rendered["text"]
    assert "placeholder" in captured.err


def test_next_send_of_a_romania_only_campaign_is_in_romanian_time(shop: Path) -> None:
    campaign_file = shop / "campaigns" / "shipping-deadlines.yaml"
    text = campaign_file.read_text()
    campaign_file.write_text(
        text.replace("    - consent: email\n", "    - consent: email\n    - country: RO\n", 1)
    )
    workspace = load_workspace(shop).workspace
    settings = Settings(workspace=shop, secret_key="k" * 40)
    engine = make_engine(f"sqlite:///{shop / 'var' / 'tidings.db'}")
    with engine.connect() as conn:
        (first,) = next_sends(
            conn, workspace, workspace.campaigns["shipping-deadlines"], settings=settings, now=NOW
        )
    engine.dispose()
    # RO standard cutoff 2026-12-18 16:00 Bucharest, minus 7 days, at 09:00 there.
    assert first.label() == "2026-12-11 09:00 EET (Europe/Bucharest)"
    assert first.reach > 0 and first.occurrence == "shipping_cutoff-7d@2026-12-24"


def test_a_contact_without_a_zone_is_planned_in_their_countrys_zone(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contact_id, email = _contact(shop, "RO")
    engine = make_engine(f"sqlite:///{shop / 'var' / 'tidings.db'}")
    with engine.begin() as conn:
        conn.execute(update(CONTACT).where(CONTACT.c.id == contact_id).values(timezone=None))
    engine.dispose()
    code = main(
        [
            "--workspace",
            str(shop),
            "render",
            "shipping-reminder",
            "--contact",
            email,
            "--campaign",
            "shipping-deadlines",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rendered = json.loads(captured.out)
    assert rendered["facts"]["zone"] == "Europe/Bucharest"
    assert rendered["facts"]["zone_source"] == "cutoff"


def test_simulate_keep_refuses_to_overwrite_a_file(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = shop / "kept.db"
    taken.write_text("")
    code = main(
        [
            "--workspace",
            str(shop),
            "simulate",
            "--from",
            "2026-12-10",
            "--to",
            "2026-12-11",
            "--keep",
            str(taken),
        ]
    )
    assert code == 2
    assert "the file exists" in capsys.readouterr().err


def test_trigger_of_an_occurrence_not_yet_due_says_what_it_would_send_and_needs_now(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(shop), "trigger", "holiday-greetings"])
    err = capsys.readouterr().err
    assert code == 2
    assert "is not due until 2026-12-14 10:00 in each contact's own zone" in err
    assert "add --now" in err and "messages (" in err
    engine = make_engine(f"sqlite:///{shop / 'var' / 'tidings.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DELIVERY)).scalar_one() == 0
    engine.dispose()

    assert main(["--workspace", str(shop), "trigger", "holiday-greetings", "--now", "--wait"]) == 0
    capsys.readouterr()
    workspace = load_workspace(shop).workspace
    settings = Settings(workspace=shop, secret_key="k" * 40)
    engine = make_engine(f"sqlite:///{shop / 'var' / 'tidings.db'}")
    with engine.connect() as conn:
        (first,) = next_sends(
            conn, workspace, workspace.campaigns["holiday-greetings"], settings=settings, now=NOW
        )
    engine.dispose()
    # Never shown as upcoming again: sent, or (quiet hours hold the US customers till morning) in progress.
    assert first.state in ("sent", "in progress") and first.reach > 0
    assert first.occurrence == "2026-12-14T10:00" and "2026-12-14" not in first.label()
    assert main(["--workspace", str(shop), "plan", "holiday-greetings", "--next", "1"]) == 0
    assert "already fired:" in capsys.readouterr().out
