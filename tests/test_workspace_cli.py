"""`tidings validate`: every problem on its own line, a summary, JSON for scripts, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from workspace_support import VALID_CAMPAIGN, fresh_cli_state, make_workspace

from engine.cli import main


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    fresh_cli_state()
    yield make_workspace(tmp_path / "shop")
    fresh_cli_state()


def test_clean_workspace_exits_zero_with_a_summary(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "campaigns" / "ok.yaml").write_text(VALID_CAMPAIGN)
    assert main(["--workspace", str(workspace), "validate"]) == 0
    out, err = capsys.readouterr()
    assert "1 campaigns" in out and "no problems" in out
    assert err == ""


def test_json_output_lists_every_problem_with_its_place(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "campaigns" / "a.yaml").write_text(VALID_CAMPAIGN.replace("name: Test", "nmae: Test"))
    (workspace / "campaigns" / "b.yaml").write_text(VALID_CAMPAIGN.replace("2026-12-14T10:00", "soon"))
    assert main(["--workspace", str(workspace), "validate", "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False
    assert [(Path(p["path"]).name, p["line"]) for p in payload["problems"]] == [("a.yaml", 1), ("b.yaml", 4)]
    assert "did you mean 'name'?" in payload["problems"][0]["message"]


def test_paths_inside_the_current_directory_are_printed_relative(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "campaigns" / "a.yaml").write_text(VALID_CAMPAIGN + "status: on\n")
    monkeypatch.chdir(workspace)
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("campaigns/a.yaml:7:9: status: expected 'active', 'paused' or 'draft'")


def test_validating_a_file_outside_the_workspace_checks_it_against_the_workspace(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "draft.yaml"
    outside.write_text(VALID_CAMPAIGN.replace("holiday-shoppers", "holiday-shopers"))
    assert main(["--workspace", str(workspace), "validate", str(outside)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].endswith(
        "unknown segment 'holiday-shopers'; did you mean 'holiday-shoppers'? "
        "(segments in campaigns/segments.yaml: holiday-shoppers)"
    )


def test_a_missing_path_cannot_start(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(workspace), "validate", str(workspace / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
