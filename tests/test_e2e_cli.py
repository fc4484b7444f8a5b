"""``tidings trigger`` / ``pause`` / ``resume`` / ``cancel`` on the shipped workspace with the demo shop."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_e2e_season import REPO, settings_for

from engine.cli import main
from engine.cli.context import STATE
from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.store import make_engine, upgrade

pytestmark = pytest.mark.slow

MOMENT = datetime(2026, 12, 14, 15, 0, tzinfo=UTC)  # afternoon in Europe, morning in New York


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, tmp_path / part)
    settings = settings_for(tmp_path, email_channel="outbox")
    engine = make_engine(settings.database_url_resolved)
    upgrade(engine)
    generate_demo_shop(engine, contacts=60, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()
    # Every main() reads settings afresh from the environment: point it at this workspace only.
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "TIDINGS_WORKSPACE": str(tmp_path),
        "TIDINGS_DATABASE_URL": settings.database_url_resolved,
        "TIDINGS_SECRET_KEY": "s" * 40,
        "TIDINGS_EMAIL_CHANNEL": "outbox",
        "TIDINGS_SOCIAL_CHANNEL": "outbox",
        "TIDINGS_CONCURRENCY": "4",
        "TIDINGS_EMAIL_RATE_PER_SECOND": "10000",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(STATE, "_settings", None)
    monkeypatch.setattr(STATE, "_engine", None)
    monkeypatch.setattr(STATE, "workspace", None)
    monkeypatch.setattr(STATE, "clock", FakeClock(MOMENT))
    return settings.outbox_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    assert STATE.settings.workspace_dir == Path.cwd().resolve()  # never the repository's own var/
    STATE.close()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_trigger_wait_sends_the_campaign_now_and_a_second_trigger_adds_nothing(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "trigger", "holiday-greetings", "--wait", "--json")
    assert code == 0
    first = json.loads(out)
    assert first["occurrence"] == "2026-12-14T10:00" and first["created"] > 0
    # The greeting tests its variants on 20% first: the rest waits 4 hours for the winner. Contacts for
    # whom 15:00 UTC falls in the campaign's quiet hours (the US west coast) wait for 08:00.
    held = first["reasons"].get("pending:quiet_hours", 0)
    waiting = first["reasons"].get("pending:awaiting_test", 0)
    assert 0 < first["created"] - waiting < first["created"] / 2
    assert first["rows"] == {"sent": first["created"] - held - waiting, "pending": held + waiting}
    assert set(first["reasons"]) <= {"pending:quiet_hours", "pending:awaiting_test"}
    assert len(list(cli.rglob("*.eml"))) == first["rows"]["sent"]
    code, out, err = run(capsys, "trigger", "holiday-greetings", "--wait", "--json")
    assert "tidings:" not in err
    again = json.loads(out)
    assert (code, again["created"], again["rows"]) == (0, 0, first["rows"])
    assert len(list(cli.rglob("*.eml"))) == first["rows"]["sent"]


def test_paused_campaign_refuses_to_trigger_until_resumed(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "pause", "holiday-greetings")
    assert code == 0 and "Paused holiday-greetings" in out
    code, _, err = run(capsys, "trigger", "holiday-greetings")
    assert (
        code == 2
        and err.strip()
        == "tidings: campaign holiday-greetings is paused: `tidings resume holiday-greetings` first"
    )
    assert run(capsys, "resume", "holiday-greetings")[0] == 0
    assert run(capsys, "trigger", "holiday-greetings", "--wait")[0] == 0


def test_cancel_skips_what_was_planned_but_not_sent(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trigger", "holiday-greetings", "--json")
    planned = json.loads(out)["created"]
    code, out, _ = run(capsys, "cancel", "holiday-greetings", "--json")
    assert code == 0 and json.loads(out)["skipped_deliveries"] == planned
    assert list(cli.rglob("*.eml")) == []


def test_unknown_campaign_is_one_line_with_a_suggestion(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "trigger", "holiday-greeting")
    assert code == 2 and "holiday-greetings" in err and len(err.strip().splitlines()) == 1
