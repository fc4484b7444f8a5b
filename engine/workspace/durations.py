"""Durations as marketers write them: ``15m``, ``2h``, ``7d``, ``2w`` — and nothing else.

DESIGN.md fixes the grammar to ``\\d+(m|h|d|w)``, signed (``-7d``) only for calendar offsets.
A looser parser (``3 days``, ``P3D``, ``1.5d``) would let typos through and make two spellings
of the same campaign hash differently, so anything outside the grammar is an error that shows
an example of what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

UNITS: dict[str, timedelta] = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
UNSIGNED_PATTERN = r"^\d+(m|h|d|w)$"
SIGNED_PATTERN = r"^[+-]?\d+(d|w)$"  # calendar offsets move a date by whole days
_UNSIGNED = re.compile(UNSIGNED_PATTERN)
_SIGNED = re.compile(SIGNED_PATTERN)


@dataclass(frozen=True, slots=True)
class Duration:
    """A non-negative span of time, kept as written (amount and unit) so it prints back unchanged."""

    amount: int
    unit: str

    signed: ClassVar[bool] = False
    example: ClassVar[str] = "a duration such as 30m, 2h, 7d or 2w"

    @classmethod
    def parse(cls, text: object) -> Duration:
        """Parse ``text`` or raise ``ValueError`` with a message that says what is accepted."""
        pattern = _SIGNED if cls.signed else _UNSIGNED
        if isinstance(text, bool) or not isinstance(text, str | int):
            raise ValueError(f"expected {cls.example}, got {_show(text)}")
        if isinstance(text, int):
            raise ValueError(
                f"expected {cls.example} (a number needs a unit: {text}d, {text}h …), got {text}"
            )
        stripped = text.strip()
        if not pattern.match(stripped):
            raise ValueError(f"expected {cls.example}, got {_show(text)}")
        return cls(int(stripped[:-1]), stripped[-1])

    @property
    def delta(self) -> timedelta:
        return self.amount * UNITS[self.unit]

    @property
    def whole_days(self) -> int:
        """Whole days (calendar offsets move a date by days); hours and minutes round toward zero."""
        return int(self.delta / timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    # pydantic integration: validated from text, serialised back to text, a string pattern in JSON Schema.
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return text_value_schema(cls, "duration")

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": SIGNED_PATTERN if cls.signed else UNSIGNED_PATTERN,
            "description": cls.example,
        }


@dataclass(frozen=True, slots=True)
class Offset(Duration):
    """A signed number of days or weeks: calendar trigger offsets (``-7d`` is a week before the date)."""

    signed: ClassVar[bool] = True
    example: ClassVar[str] = "whole days or weeks before (-) or after the date, such as -7d, -2d or 1w"


def text_value_schema(cls: Any, error_type: str) -> core_schema.CoreSchema:
    """The pydantic schema of a value written as text: ``cls.parse(text)`` validates it (a
    ``ValueError`` becomes an ``error_type`` error with its message), ``str()`` writes it back."""

    def validate(value: object) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise PydanticCustomError(error_type, str(exc)) from None

    return core_schema.no_info_plain_validator_function(
        validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
    )


def parse_duration(text: str) -> timedelta:
    """``"7d"`` → ``timedelta(days=7)``; raises ``ValueError`` for anything outside the grammar."""
    return Duration.parse(text).delta


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
