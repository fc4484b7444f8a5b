"""JSON Schema documents for the workspace files, generated from the same pydantic models the
loader validates with — so an editor (yaml-language-server) flags the same shape errors.

What JSON Schema cannot say (a template, segment or named date that does not exist; the same
step id twice; a cron line's field values) is left to ``tidings validate``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from engine.workspace.models import Campaign
from engine.workspace.schedules import ScheduleFile
from engine.workspace.segments import SegmentsFile

SchemaKind = Literal["campaign", "segments", "schedule"]
SCHEMA_KINDS: tuple[SchemaKind, ...] = ("campaign", "segments", "schedule")
_MODELS: dict[str, type[BaseModel]] = {
    "campaign": Campaign,
    "segments": SegmentsFile,
    "schedule": ScheduleFile,
}
_DESCRIPTIONS = {
    "campaign": "A Tidings campaign (campaigns/NAME.yaml).",
    "segments": "Tidings segments (campaigns/segments.yaml).",
    "schedule": "A Tidings schedule (schedules/NAME.yaml): named dates, ranges, shipping cutoffs.",
}


def json_schema(kind: str = "campaign") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one kind of workspace file."""
    if kind not in _MODELS:
        raise ValueError(f"unknown schema {kind!r}: expected one of {', '.join(SCHEMA_KINDS)}")
    schema = _MODELS[kind].model_json_schema(by_alias=True, mode="validation")
    schema["description"] = _DESCRIPTIONS[kind]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
