"""The command line as a newcomer meets it: help everywhere, one-line errors, scriptable output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from engine import __version__
from engine.cli import app, main


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path; Typer bundles its own Click, so groups are recognised by their ``commands``."""
    yield prefix
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "tidings")
def test_help_on_every_command_exits_0(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_the_data_commands_are_listed() -> None:
    assert {("demo-data",), ("import",), ("export",), ("db", "upgrade")} <= set(COMMANDS)


def test_unknown_command_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "frobnicate" in err and "Traceback" not in err


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_demo_data_json_prints_one_object_a_script_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--workspace",
            str(tmp_path),
            "demo-data",
            "--contacts",
            "40",
            "--seed",
            "7",
            "--season",
            "2026",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert (summary["contacts"], summary["seed"], summary["season"]) == (40, 7, 2026)
    assert summary["orders"] > 0 and summary["events"] > summary["orders"]


def test_demo_data_into_a_loaded_store_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(tmp_path), "demo-data", "-n", "10", "--season", "2026"]) == 0
    assert "Loaded the demo shop" in capsys.readouterr().out
    assert main(["--workspace", str(tmp_path), "demo-data", "-n", "10", "--season", "2026"]) == 2
    err = capsys.readouterr().err
    assert "--append" in err
    assert len([line for line in err.splitlines() if line.startswith("tidings:")]) == 1


def test_bad_option_value_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-data", "--contacts", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--contacts" in err
