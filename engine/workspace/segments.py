"""Named audiences in campaigns/segments.yaml, used by a campaign's ``audience: {segment: NAME}``.

A segment is a ``where`` list like a campaign's (see :mod:`engine.workspace.filters`); the
campaign's own ``where`` conditions are ANDed with it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from engine.workspace.filters import Filter
from engine.workspace.values import NAME_PATTERN, StrictModel


class Segment(StrictModel):
    description: str | None = None
    where: list[Filter] = Field(min_length=1)


class SegmentsFile(StrictModel):
    """campaigns/segments.yaml."""

    model_config = ConfigDict(title="Tidings segments")

    segments: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Segment] = Field(default_factory=dict)
