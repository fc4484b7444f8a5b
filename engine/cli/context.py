"""What every command shares: settings, the database engine and the consoles, created on first use.

Commands that never touch the database (``schema``, ``render --sample``) never open it, and
invalid settings are reported once, as one line naming the variable, by whichever command needs them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from engine.clock import Clock, SystemClock
from engine.logs import configure_logging

if TYPE_CHECKING:  # settings (pydantic, babel) and SQLAlchemy load when a command first needs them
    from sqlalchemy.engine import Engine

    from engine.settings import Settings


PIPED_WIDTH = 160


def _console(*, stderr: bool) -> Console:
    """A console; when piped or captured, wide enough that tables keep their columns (Rich assumes 80)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPED_WIDTH
    return Console(stderr=stderr, soft_wrap=True, highlight=not stderr, width=width)


@dataclass
class CliState:
    workspace: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))
    _settings: Settings | None = None
    _engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides = dict(self.overrides)
            if self.workspace is not None:
                overrides["workspace"] = self.workspace
            from engine.settings import load_settings
            from engine.store.outage import OneLineDatabaseErrors

            self._settings = load_settings(**overrides)
            configure_logging(
                self._settings.log_format.value,
                self._settings.log_level,
                self._settings.secret_values(),
                filters=[OneLineDatabaseErrors()],
            )
        return self._settings

    def sending_settings(self) -> Settings:
        """Settings for a command that sends (run, trigger, worker): exit 2 when unsafe for real mail.

        See :mod:`engine.safety` for what is refused; ``tidings doctor`` lists the same findings.
        """
        from engine.safety import refuse_unsafe

        settings = self.settings
        refuse_unsafe(settings)
        return settings

    def engine(self, *, migrate: bool = False) -> Engine:
        """The database engine; checked reachable; with ``migrate`` the schema is brought up to date."""
        if self._engine is None:
            from engine.store import check_reachable, engine_for

            engine = engine_for(self.settings)
            check_reachable(engine)
            self._engine = engine
        if migrate:
            from engine.store import upgrade

            upgrade(self._engine)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._settings = None  # the next main() (tests call it repeatedly) reads the environment afresh


STATE = CliState()
