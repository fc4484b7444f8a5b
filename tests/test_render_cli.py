"""``tidings render``: prints a template as it would be sent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from render_support import SECRET

from engine.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for folder in ("templates", "schedules", "campaigns"):  # templates read the workspace's labels
        shutil.copytree(REPO / folder, tmp_path / folder)
    monkeypatch.setenv("TIDINGS_SECRET_KEY", SECRET)
    monkeypatch.setenv("TIDINGS_WORKSPACE", str(tmp_path))
    return tmp_path


def test_render_prints_the_html_of_the_sample(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "shipping-reminder"]) == 0
    out = capsys.readouterr().out
    assert out.lower().startswith("<!doctype html>") and "Hea Kadri!" in out  # the sample contact is Estonian


def test_render_json_has_the_documented_keys(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "win-back", "--locale", "en", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"subject", "preheader", "html", "text", "headers", "size", "locale"}
    assert data["locale"] == "en" and data["subject"] == "We miss you, James"
    assert data["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_service_message_renders_without_unsubscribe_headers(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "claim-opened", "--locale", "en", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["subject"] == "We have your claim CL-2026-00031 about order NB-10655"
    assert "List-Unsubscribe" not in data["headers"] and "/u/" not in data["html"]


def test_render_text_writes_to_a_file(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = workspace / "out.txt"
    assert main(["render", "win-back", "--text", "--out", str(target)]) == 0
    assert target.read_text().startswith("It has been a while")


def test_unknown_template_is_one_line_with_a_suggestion_and_exit_2(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "win-bak"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "tidings: unknown template 'win-bak' (did you mean 'win-back'?)"
