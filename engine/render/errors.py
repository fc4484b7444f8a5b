"""The one error rendering raises.

The runtime turns a :class:`RenderError` into an outbox row failed with reason
``render_error`` and this message, so it is one line and names the template file and
line when they are known: the marketer fixes the file, not the engine.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import Problem, SourceLocation, TidingsError


class RenderError(TidingsError):
    """A template could not be compiled or rendered; nothing half-made leaves the renderer."""

    exit_code = 1

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None) -> None:
        self.reason = " ".join(str(message).split())
        self.path = path
        self.line = line
        where = f"{path}:{line or 1}: " if path is not None else ""
        super().__init__(f"{where}{self.reason}")

    def as_problem(self) -> Problem:
        return Problem(SourceLocation(self.path or "<template>", self.line or 1), self.reason)
