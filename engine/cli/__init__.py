"""The ``tidings`` command line: thin commands over the engine.

Every command follows DESIGN.md's exit codes (0 done, 1 done-but-look, 2 could-not-start)
and prints errors as one line on stderr, never a traceback (``TIDINGS_DEBUG=1`` shows one).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import typer
from typer.exceptions import TyperException

from engine import __version__
from engine.cli.context import STATE
from engine.errors import TidingsError

app = typer.Typer(
    name="tidings",
    help="Tidings — marketing automation for online shops: campaigns in YAML, MJML email, SendGrid/SMTP/X.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module adds its commands with register(app). Order is the order of `tidings --help`.
COMMAND_MODULES = [
    "engine.cli.starter",
    "engine.cli.db",
    "engine.cli.data",
    "engine.cli.render",
    "engine.cli.workspace",
    "engine.cli.public",
    "engine.cli.stats",
    "engine.cli.preview",
    "engine.cli.plan",
    "engine.cli.runtime",
    "engine.cli.care",
    "engine.cli.daemon",
    "engine.cli.worker",
    "engine.cli.doctor",
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tidings {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    workspace: Path | None = typer.Option(
        None,
        "--workspace",
        "-w",
        envvar="TIDINGS_WORKSPACE",
        help="Folder with campaigns/, templates/, schedules/.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    STATE.workspace = workspace


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) DESIGN.md's exit codes."""
    command = typer.main.get_command(app)
    code = 0
    try:
        result = command.main(args=argv, prog_name="tidings", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        STATE.err.print("tidings: aborted")
        code = 130
    except TyperException as exc:
        # Bad arguments and other usage errors (Typer's bundled Click): one line, exit 2.
        exit_code = getattr(exc, "exit_code", 2)
        if exit_code == 0 or not hasattr(exc, "format_message"):
            code = exit_code
        else:
            STATE.err.print(f"tidings: {_one_line(exc.format_message())}", markup=False)
            code = 2 if exit_code == 1 else exit_code
    except TidingsError as exc:
        STATE.err.print(f"tidings: {_one_line(str(exc))}", markup=False)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001 — the last line of defence against tracebacks
        if os.environ.get("TIDINGS_DEBUG"):
            raise
        STATE.err.print(f"tidings: internal error: {type(exc).__name__}: {_one_line(str(exc))}", markup=False)
        code = 2
    finally:
        STATE.close()
    return code


def run() -> None:
    sys.exit(main())
