"""Copies of the shipped workspace for the ``validate`` tests, and running ``validate`` on them.

A test copies only the campaigns it is about (with segments.yaml, schedules/, the layouts and
partials, and the templates those campaigns send): the files are the shipped ones, and
``validate`` compiles a handful of templates instead of all of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.workspace.loader import load_campaign_file

REPO = Path(__file__).resolve().parents[1]


def shipped(root: Path, *campaigns: str) -> Path:
    """The shipped workspace under ``root``: the named campaigns (all when none) and what they need."""
    source = REPO / "campaigns"
    names = campaigns or tuple(p.stem for p in source.glob("*.yaml") if p.name != "segments.yaml")
    (root / "campaigns").mkdir(parents=True)
    shutil.copy(source / "segments.yaml", root / "campaigns" / "segments.yaml")
    shutil.copytree(REPO / "schedules", root / "schedules")
    templates: set[str] = set()
    for name in names:
        shutil.copy(source / f"{name}.yaml", root / "campaigns" / f"{name}.yaml")
        campaign, problems = load_campaign_file(source / f"{name}.yaml")
        assert campaign is not None, problems
        templates.update(campaign.templates_used())
    for folder in ("_layouts", "_partials", *sorted(templates)):
        shutil.copytree(REPO / "templates" / folder, root / "templates" / folder)
    return root


def edit(path: Path, old: str, new: str, *, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def validate(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``tidings --workspace ROOT validate``: exit code, stderr (the problems) and stdout (the summary)."""
    capsys.readouterr()
    code = main(["--workspace", str(root), "validate", *args])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``path`` holding ``needle``."""
    for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} is not in {path}")
