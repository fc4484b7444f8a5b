"""`tidings worker` refuses to start, in one line and with exit 2, when something it needs is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_fanout_support import write_workspace

from engine.cli import main
from engine.store import make_engine, upgrade


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "x" * 40)
    monkeypatch.chdir(tmp_path)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def migrated_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'tidings.db'}")
    upgrade(engine)
    engine.dispose()


def test_worker_without_a_broker_url_says_so_in_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worker"]) == 2
    line = one_error_line(capsys)
    assert "TIDINGS_BROKER_URL is not set" in line


def test_worker_with_an_unreachable_broker_says_so_in_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_BROKER_URL", "redis://:sekret-pass@127.0.0.1:9/0")
    assert main(["worker"]) == 2
    line = one_error_line(capsys)
    assert "broker unreachable (redis://:***@127.0.0.1:9/0)" in line
    assert "sekret" not in line


def test_worker_refuses_a_database_that_was_never_migrated(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_workspace(tmp_path)
    monkeypatch.setenv("TIDINGS_BROKER_URL", "memory://")
    assert main(["worker"]) == 2
    assert "run `tidings db upgrade`" in one_error_line(capsys)


def test_worker_refuses_a_workspace_that_does_not_validate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_workspace(tmp_path)
    (tmp_path / "campaigns" / "holiday.yaml").write_text("name: Holiday\nsteps: []\n")
    migrated_database(tmp_path)
    monkeypatch.setenv("TIDINGS_BROKER_URL", "memory://")
    assert main(["worker"]) == 2
    line = one_error_line(capsys)
    assert "holiday.yaml" in line and "tidings validate" in line


def test_worker_needs_at_least_one_queue(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_BROKER_URL", "memory://")
    assert main(["worker", "--queues", " , "]) == 2
    assert "--queues" in one_error_line(capsys)
