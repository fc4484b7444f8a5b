"""Every file under tests/malformed/ is a campaign with one defect; `tidings validate` must report
exactly that defect, as one line at the line the file's first line announces, and exit 1."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from workspace_support import fresh_cli_state, make_workspace

from engine.cli import main

MALFORMED = Path(__file__).parent / "malformed"
FILES = sorted(MALFORMED.glob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (\d+): (.+)$")
PROBLEM_LINE = re.compile(r"^(?P<path>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): (?P<message>\S.*)$")


def expectation(path: Path) -> tuple[int, str]:
    first = path.read_bytes().split(b"\n", 1)[0]
    match = EXPECT.match(first)
    assert match, f"{path.name} must start with '# expect: LINE: TEXT'"
    return int(match[1]), match[2].decode()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    fresh_cli_state()
    yield make_workspace(tmp_path / "shop")
    fresh_cli_state()


def test_there_are_at_least_thirty_malformed_files() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("source", FILES, ids=[f.stem for f in FILES])
def test_validate_reports_the_defect_on_its_line(
    source: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, text = expectation(source)
    target = workspace / "campaigns" / source.name
    shutil.copyfile(source, target)

    code = main(["--workspace", str(workspace), "validate"])

    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "Traceback" not in out + err
    rows = [PROBLEM_LINE.match(row) for row in err.splitlines()]
    assert all(rows), f"not one-line problems: {err!r}"
    problems = [row for row in rows if row is not None and Path(row["path"]).name == source.name]
    assert len(problems) == 1, err
    found = problems[0]
    assert (int(found["line"]), text) == (line, text) and text in found["message"], err
