"""The published JSON Schemas come from the loader's models: what the loader rejects for its shape,
the schema rejects too; the shipped files pass both; the committed schemas/ files are current."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.cli import main
from engine.workspace.schema import json_schema
from engine.workspace.yaml_source import parse_yaml

REPO = Path(__file__).resolve().parents[1]
MALFORMED = Path(__file__).parent / "malformed"

# Malformed files whose defect is one of shape (the rest need other files, a clock or cron semantics).
SHAPE_DEFECTS = [
    "unknown-key-nested",
    "misspelt-trigger",
    "wrong-type-name",
    "wrong-type-steps",
    "bad-cron-fields",
    "two-triggers",
    "no-trigger",
    "empty-trigger",
    "empty-steps",
    "bad-duration-words",
    "bad-duration-iso",
    "variant-weight-zero",
    "unknown-step-kind",
    "two-actions-in-step",
    "bad-status",
    "bad-quiet-hours",
    "frequency-cap-zero",
    "unknown-event-type",
    "unknown-filter-field",
    "bad-at-time",
    "bad-offset-unit",
    "send-template-and-variants",
    "wrong-channel",
    "top-level-list",
    "empty",
]


def as_json(value: Any) -> Any:
    """YAML data as an editor's schema checker sees it: dates and times are strings."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def load(path: Path) -> Any:
    document, problems = parse_yaml(path.read_bytes(), path)
    assert document is not None and problems == [], problems
    return as_json(document.data)


@pytest.mark.parametrize("name", SHAPE_DEFECTS)
def test_schema_rejects_what_the_loader_rejects_for_its_shape(name: str) -> None:
    validator = jsonschema.Draft202012Validator(json_schema("campaign"))
    data = load(MALFORMED / f"{name}.yaml")
    assert list(validator.iter_errors(data)), f"{name} passes the schema"


@pytest.mark.parametrize(
    ("kind", "path"),
    [("campaign", p) for p in sorted((REPO / "campaigns").glob("*.yaml")) if p.name != "segments.yaml"]
    + [("segments", REPO / "campaigns" / "segments.yaml")]
    + [("schedule", p) for p in sorted((REPO / "schedules").glob("*.yaml"))],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_shipped_files_pass_their_schema_and_point_editors_at_it(kind: str, path: Path) -> None:
    jsonschema.Draft202012Validator(json_schema(kind)).validate(load(path))
    assert path.read_text().startswith(f"# yaml-language-server: $schema=../schemas/{kind}.schema.json\n")


@pytest.mark.parametrize("kind", ["campaign", "segments", "schedule"])
def test_committed_schema_files_match_the_models(kind: str) -> None:
    committed = json.loads((REPO / "schemas" / f"{kind}.schema.json").read_text())
    assert committed == json_schema(kind), f"run: tidings schema {kind} > schemas/{kind}.schema.json"


def test_schema_command_prints_one_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed == json_schema("campaign")


def test_schema_command_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "templates"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
