"""``tidings plan``: a dry run that counts, splits, lists and renders — and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from test_planner_support import GRANTED, add_contacts

from engine.cli import main
from engine.cli.context import STATE
from engine.store import make_engine, upgrade
from engine.store.models import Delivery, Suppression

CAMPAIGN = """\
name: Holiday greetings
status: active
timezone: Europe/Bucharest
audience:
  where:
    - consent: email
trigger:
  at: {time: 2026-12-14T10:00, local_time: true}
steps:
  - id: greeting
    send:
      channel: email
      variants:
        - {template: hello, weight: 50}
        - {template: hello-b, weight: 50}
"""
EMAIL = """\
---
subject: "Hello {{ contact.first_name or 'there' }}"
---
<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ greeting_word }} {{ shop.postal_address }}
  <a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "greetings.yaml").write_text(CAMPAIGN)
    for name, word in (("hello", "Hello"), ("hello-b", "Hi")):
        folder = tmp_path / "templates" / name
        folder.mkdir(parents=True)
        (folder / "email.mjml").write_text(EMAIL.replace("{{ greeting_word }}", word))
    database = tmp_path / "var" / "tidings.db"
    monkeypatch.setenv("TIDINGS_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "k" * 40)
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    add_contacts(
        engine,
        [
            {
                "id": 1,
                "email": "kadri@example.ee",
                "timezone": "Europe/Tallinn",
                "country": "EE",
                "locale": "et",
            },
            {
                "id": 2,
                "email": "ioana@example.ro",
                "timezone": "Europe/Bucharest",
                "country": "RO",
                "locale": "ro",
            },
            {
                "id": 3,
                "email": "jo@example.com",
                "timezone": "America/New_York",
                "country": "US",
                "locale": "en",
            },
            {
                "id": 4,
                "email": "gone@example.com",
                "timezone": "America/New_York",
                "country": "US",
                "locale": "en",
            },
        ],
    )
    add_contacts(engine, [{"id": 5, "email": "never@example.com", "country": "EE"}], consent=False)
    with engine.begin() as conn:
        conn.execute(
            insert(Suppression.__table__),  # type: ignore[attr-defined]
            [
                {
                    "email": "gone@example.com",
                    "channel": "email",
                    "reason": "unsubscribe",
                    "created_at": GRANTED,
                }
            ],
        )
    engine.dispose()
    STATE._settings = None
    STATE.workspace = None
    yield tmp_path
    STATE._settings = None
    STATE.workspace = None


def deliveries(root: Path) -> int:
    engine = make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}")
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Delivery.__table__)).scalar_one()  # type: ignore[attr-defined]
    engine.dispose()
    return int(count)


def test_plan_json_counts_reach_and_reasons_without_writing(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(shop), "plan", "greetings", "--at", "2026-12-14T10:00", "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    (occurrence,) = report["occurrences"]
    assert occurrence["occurrence"] == "2026-12-14T10:00"
    assert occurrence["reach"] == 3
    assert occurrence["matched"] == 5
    assert occurrence["excluded"] == {"no_consent": 1, "suppressed": 1}
    assert sum(row["count"] for row in occurrence["breakdown"]) == 3
    assert {row["variant"] for row in occurrence["breakdown"]} <= {"hello", "hello-b"}
    first = {row["email"]: row for row in occurrence["first_rows"]}
    assert first["kadri@example.ee"]["local_time"] == "2026-12-14 10:00 EET"
    assert first["jo@example.com"]["local_time"] == "2026-12-14 10:00 EST"
    assert {row["renders"] for row in first.values()} == {"ok"}
    assert deliveries(shop) == 0


def test_plan_prints_tables_for_people(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--workspace", str(shop), "plan", "greetings", "--at", "2026-12-14T10:00"])
    out = capsys.readouterr().out
    assert code == 0
    assert "would reach 3" in out
    assert "no consent" in out and "suppressed" in out
    assert "jo@example.com" in out


def test_plan_shows_a_template_that_fails_to_render_and_exits_1(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = EMAIL.replace("{{ greeting_word }}", "{{ contact.nickname.upper() }}")
    (shop / "templates" / "hello-b" / "email.mjml").write_text(broken)
    code = main(["--workspace", str(shop), "plan", "greetings", "--at", "2026-12-14T10:00", "--json"])
    report = json.loads(capsys.readouterr().out)
    statuses = {row["renders"] for row in report["occurrences"][0]["first_rows"]}
    assert code == 1
    assert any(status.startswith("error") for status in statuses)


def test_plan_of_an_unknown_campaign_is_one_line_and_exit_2(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(shop), "plan", "greetins"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "greetings" in err  # did you mean
