"""Shares of an audience as marketers write them: ``20%`` (or ``12.5%``), bounded per use.

An A/B test's ``share`` (the slice that gets the variants first) and a campaign's ``holdout``
(the slice kept unsent) are percentages. ``20%`` and a bare ``20`` are both accepted (YAML reads
``20%`` as text and ``20`` as a number); ``0.2`` is refused rather than guessed at, since it could
mean 0.2 % or 20 %. The bounds are exclusive: a 0 % test or a 100 % holdout measures nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from engine.workspace.durations import text_value_schema

PERCENT_PATTERN = r"^\d{1,2}(\.\d{1,2})?%$"
_PERCENT = re.compile(r"^(\d{1,3}(\.\d{1,2})?)\s*%?$")


@dataclass(frozen=True, slots=True)
class Percent:
    """A share of the audience, kept as the percentage written (``20`` for ``20%``)."""

    value: float

    #: Exclusive upper bound; a subclass narrows it (a holdout above half leaves too few treated).
    maximum: ClassVar[float] = 100.0

    @property
    def fraction(self) -> float:
        return self.value / 100.0

    def __str__(self) -> str:
        return f"{self.value:g}%"

    @classmethod
    def parse(cls, value: object) -> Percent:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected a percentage such as 20%, got {_show(value)}")
        text = str(value).strip()
        match = _PERCENT.match(text)
        if match is None:
            raise ValueError(f"expected a percentage such as 20% or 12.5%, got {_show(value)}")
        number = float(match.group(1))
        if not 0 < number < cls.maximum:
            raise ValueError(f"expected a percentage above 0% and below {cls.maximum:g}%, got {number:g}%")
        if isinstance(value, float) and number < 1 and not text.endswith("%"):
            raise ValueError(f"write the share as a percentage (e.g. {number * 100:g}%), got {value}")
        return cls(number)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return text_value_schema(cls, "percent")

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string", "pattern": PERCENT_PATTERN},
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": cls.maximum},
            ],
            "description": f"a percentage above 0% and below {cls.maximum:g}%, e.g. 20%",
        }


@dataclass(frozen=True, slots=True)
class HoldoutPercent(Percent):
    """A holdout: at most just under half the audience, so most of it is still reached."""

    maximum: ClassVar[float] = 50.0


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else ("nothing" if value is None else repr(value))


__all__ = ["HoldoutPercent", "Percent"]
