"""``tidings init`` writes a workspace that validates and simulates; ``send-test`` sends one [TEST]."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers.smtp_server import SmtpServer
from sqlalchemy.engine import Engine

from engine.cli import main
from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.store import make_engine, upgrade
from engine.workspace.starter import write_starter


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    workspace = tmp_path / "shop"
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(workspace))
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "s" * 40)
    monkeypatch.delenv("TIDINGS_DATABASE_URL", raising=False)
    monkeypatch.delenv("TIDINGS_EMAIL_CHANNEL", raising=False)
    return workspace


def test_init_writes_a_workspace_with_schema_lines_that_resolve(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(env)]) == 0

    out = capsys.readouterr().out
    assert "campaigns/holiday-hello.yaml" in out and "tidings validate" in out
    for yaml_file in [*env.glob("campaigns/*.yaml"), *env.glob("schedules/*.yaml")]:
        first = yaml_file.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=../schemas/"), yaml_file
        schema = (yaml_file.parent / first.split("$schema=", 1)[1]).resolve()
        assert json.loads(schema.read_text(encoding="utf-8"))["$schema"].startswith("https://json-schema.org")
    assert (env / ".gitignore").read_text().strip().endswith("var/")
    assert (env / "templates" / "holiday-hello" / "sample.yaml").is_file()
    assert (env / "images" / "hello.png").read_bytes().startswith(b"\x89PNG")


def test_init_refuses_a_folder_that_is_not_empty_unless_forced(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.mkdir()
    (env / "notes.txt").write_text("mine")

    assert main(["init", str(env)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (env / "campaigns").exists()

    assert main(["init", str(env), "--force"]) == 0
    assert (env / "notes.txt").read_text() == "mine"  # --force writes the starter, and touches nothing else
    assert (env / "campaigns" / "holiday-hello.yaml").is_file()


def test_init_refuses_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["init", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_new_workspace_validates_and_simulates_a_small_demo_shop(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_starter(env)
    assert main(["validate"]) == 0
    assert "no problems" in capsys.readouterr().out
    engine = make_engine(f"sqlite:///{env / 'var' / 'tidings.db'}")
    upgrade(engine)
    generate_demo_shop(engine, contacts=80, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()

    assert main(["simulate", "--from", "2026-12-10", "--to", "2026-12-20", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    hello = report["campaigns"]["holiday-hello"]
    assert hello["sent"] > 0 and hello["failed"] == 0
    days = {day["date"]: day["counts"] for day in report["days"] if day["counts"]}
    assert set(days) <= {"2026-12-14", "2026-12-15"}  # 10:00 on Dec 15 in each contact's zone
    sent = list((env / "var" / "outbox" / "simulation" / "email").glob("*.eml"))
    assert len(sent) == hello["sent"]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_send_test_sends_one_test_message_through_the_configured_channel(
    env: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_starter(env)
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "smtp")
    monkeypatch.setenv("TIDINGS_SMTP_URL", smtp.url())
    monkeypatch.setenv("TIDINGS_SMTP_REQUIRE_TLS", "false")  # a local relay without credentials

    assert main(["send-test", "holiday-hello", "--to", "me@example.org", "--locale", "en"]) == 0

    assert "Sent [TEST] Ana, happy holidays from" in capsys.readouterr().out
    (received,) = smtp.received
    assert received.rcpt_tos == ("me@example.org",)
    assert received.message["Subject"].startswith("[TEST] Ana, happy holidays")
    assert received.message["X-Tidings-Test"] == "1"


def test_send_test_renders_for_a_real_contact(
    env: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_starter(env)
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "smtp")
    monkeypatch.setenv("TIDINGS_SMTP_URL", smtp.url())
    monkeypatch.setenv("TIDINGS_SMTP_REQUIRE_TLS", "false")  # a local relay without credentials
    engine: Engine = make_engine(f"sqlite:///{env / 'var' / 'tidings.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        from sqlalchemy import insert

        from engine.store.models import Contact

        conn.execute(
            insert(Contact.__table__),  # type: ignore[attr-defined]
            {
                "email": "mihai@example.ro",
                "first_name": "Mihai",
                "tags": [],
                "attributes": {},
                "total_spent": 0,
            },
        )
    engine.dispose()

    assert (
        main(["send-test", "holiday-hello", "--to", "me@example.org", "--contact", "mihai@example.ro"]) == 0
    )

    (received,) = smtp.received
    assert received.message["Subject"].startswith("[TEST] Mihai, happy holidays")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["send-test", "holiday-hello", "--to", "not an address"], 2, "enter one email address"),
        (["send-test", "no-such-template", "--to", "me@example.org"], 2, "no template 'no-such-template'"),
        (["send-test", "holiday-hello", "--to", "me@example.org", "--locale", "e n"], 2, "not a locale"),
    ],
)
def test_send_test_refuses_bad_arguments_in_one_line(
    env: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    write_starter(env)
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_send_test_of_a_template_that_does_not_render_exits_1(
    env: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_starter(env)
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "smtp")
    monkeypatch.setenv("TIDINGS_SMTP_URL", smtp.url())
    monkeypatch.setenv("TIDINGS_SMTP_REQUIRE_TLS", "false")  # a local relay without credentials
    template = env / "templates" / "holiday-hello" / "email.mjml"
    template.write_text(template.read_text().replace("{{ shop.name }} ·", "{{ shop.nope.deeper }} ·"))

    assert main(["send-test", "holiday-hello", "--to", "me@example.org"]) == 1
    assert "does not render" in capsys.readouterr().err and smtp.received == []
