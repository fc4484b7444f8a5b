"""Errors a user can act on.

Everything the CLI prints as a one-line error derives from :class:`TidingsError`;
anything else reaching the top is a bug and is still printed as one line (with
the exception type), never as a traceback, unless ``TIDINGS_DEBUG=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class TidingsError(Exception):
    """An error the user can fix. ``exit_code`` follows DESIGN.md: 1 done-with-problems, 2 could-not-start."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SettingsError(TidingsError):
    """A TIDINGS_* variable holds a value the engine cannot use."""


class StoreUnavailable(TidingsError):
    """The database cannot be reached or opened."""


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """A place in a user's file; lines and columns are 1-based, as editors show them."""

    path: Path | str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a user's file, printed as ``path:line:col: message``."""

    location: SourceLocation
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.location}: {prefix}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.location.path),
            "line": self.location.line,
            "column": self.location.column,
            "message": self.message,
            "severity": self.severity,
        }


class SourceError(TidingsError):
    """A user file is wrong at a known place."""

    def __init__(self, problem: Problem, *, exit_code: int = 1) -> None:
        super().__init__(str(problem), exit_code=exit_code)
        self.problem = problem
