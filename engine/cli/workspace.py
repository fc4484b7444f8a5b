"""``tidings validate`` and ``tidings schema``: check the marketer's files, publish their JSON Schema."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engine.cli.context import STATE
from engine.errors import Problem, SourceLocation, TidingsError

if TYPE_CHECKING:  # the loader pulls in pydantic models, holidays, ruamel: load it when a command runs
    from engine.render.renderer import Renderer
    from engine.runtime.rehearsal import Rehearsal
    from engine.settings import Settings
    from engine.workspace.loader import LoadResult, Workspace


class SchemaKind(StrEnum):
    campaign = "campaign"
    segments = "segments"
    schedule = "schedule"


def validate_cmd(
    paths: list[Path] = typer.Argument(
        None,
        help="Files to report on (default: the whole workspace). A file outside the workspace is checked "
        "against it as if it were in it.",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"ok": bool, "problems": [...]} instead.'),
) -> None:
    """Check every campaign, segment, schedule and template; print each problem as path:line:col: message."""
    from engine.workspace.loader import load_workspace

    settings = STATE.settings
    root = settings.workspace_dir
    result = load_workspace(root, default_timezone=settings.timezone, default_locale=settings.default_locale)
    problems = list(result.problems)
    checked, rehearsed = _render_checks(result, settings)
    problems.extend(checked)
    if paths:
        problems = _for_paths(paths, result, problems, settings.timezone)
    problems.sort(key=lambda p: (str(p.location.path), p.location.line, p.location.column))
    shown = [_relative(p) for p in problems]
    errors = [p for p in shown if p.severity == "error"]
    if as_json:
        payload = {"ok": not errors, "problems": [p.as_dict() for p in shown]}
        STATE.out.print(json.dumps(payload, indent=2), markup=False, highlight=False, emoji=False)
    else:
        for problem in shown:
            STATE.err.print(str(problem), markup=False, highlight=False, emoji=False)
        STATE.out.print(_summary(result, shown, root, rehearsed), markup=False, highlight=False, emoji=False)
    if errors:
        raise typer.Exit(1)


def schema_cmd(
    kind: SchemaKind = typer.Argument(SchemaKind.campaign, help="Which file's schema."),
) -> None:
    """Print the JSON Schema of a workspace file, for editors.

    e.g. ``tidings schema campaign > schemas/campaign.schema.json``
    """
    from engine.workspace.schema import json_schema

    text = json.dumps(json_schema(kind.value), indent=2, ensure_ascii=False)
    STATE.out.print(text, markup=False, highlight=False, emoji=False)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
    app.command("schema")(schema_cmd)


# ---------------------------------------------------------------------------------------------


def _render_checks(result: LoadResult, settings: Settings) -> tuple[list[Problem], str | None]:
    """The template and campaign checks, and the rehearsal with real contacts when a store exists.

    Returns the problems and, when real contacts were used, a note for the summary line. A real
    contact's finding at a place the samples already found wrong is the same finding: left out.
    """
    from engine.render.checks import check_workspace, unique
    from engine.render.renderer import Renderer

    workspace = result.workspace
    renderer = Renderer(settings, workspace.templates_dir, labels=workspace.schedules.labels)
    rehearsal, note = _rehearse(workspace, settings, renderer)
    reached = rehearsal.reached if rehearsal is not None else None
    found = check_workspace(workspace, settings, renderer=renderer, reached=reached)
    if rehearsal is not None:
        wrong = {(str(p.location.path), p.location.line) for p in found if p.severity == "error"}
        found += [p for p in rehearsal.problems if (str(p.location.path), p.location.line) not in wrong]
    return unique(found), note


def _rehearse(
    workspace: Workspace, settings: Settings, renderer: Renderer
) -> tuple[Rehearsal | None, str | None]:
    """The rehearsal over the configured database, or None when there is none (or it cannot be read)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from engine.runtime.rehearsal import rehearse
    from engine.store import engine_for
    from engine.store.migrate import current_revision, head_revision

    url = make_url(settings.database_url_resolved)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        return None, None  # no store yet: the sample checks are all there is
    engine = engine_for(settings)
    try:
        if current_revision(engine) != head_revision():
            return None, "the database's schema is not current (tidings db upgrade): no real-contact checks"
        rehearsal = rehearse(engine, workspace, settings, renderer, now=STATE.clock.now())
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:120]
        return None, f"the database cannot be read ({reason}): no real-contact checks"
    finally:
        engine.dispose()
    if not rehearsal.contacts:
        return rehearsal, None
    return rehearsal, f"checked with {rehearsal.contacts} real contact messages from the database"


def _for_paths(paths: list[Path], result: LoadResult, problems: list[Problem], zone: str) -> list[Problem]:
    """Keep the problems of the named files; check named files that lie outside the workspace."""
    root = result.workspace.root.resolve()
    wanted: set[Path] = set()
    extra: list[Problem] = []
    for given in paths:
        path = given.expanduser().resolve()
        if not path.exists():
            raise TidingsError(f"{given}: no such file or folder")
        if path.is_dir():
            if path == root:
                return problems
            wanted.update(p for p in path.rglob("*") if p.is_file())
            wanted.add(path)
            continue
        wanted.add(path)
        if not path.is_relative_to(root):
            extra.extend(_check_outside(path, result, zone))
    kept = [p for p in problems if _resolved(p.location.path) in wanted or _inside_any(p, wanted)]
    return kept + extra


def _inside_any(problem: Problem, wanted: set[Path]) -> bool:
    path = _resolved(problem.location.path)
    return any(path.is_relative_to(w) for w in wanted if w.is_dir())


def _check_outside(path: Path, result: LoadResult, zone: str) -> list[Problem]:
    from engine.workspace.loader import (
        SEGMENTS_FILE,
        check_campaign,
        load_campaign_file,
        load_schedule_file,
        load_segments_file,
    )

    if path.name == SEGMENTS_FILE:
        return load_segments_file(path)[2]
    if path.parent.name == "schedules":
        return load_schedule_file(path)[2]
    campaign, problems = load_campaign_file(path, default_timezone=zone)
    if campaign is not None:
        problems.extend(check_campaign(campaign, result.workspace))
    return problems


def _resolved(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


def _relative(problem: Problem) -> Problem:
    """Paths relative to the current directory when the file is inside it, as compilers print them."""
    path = _resolved(problem.location.path)
    cwd = Path.cwd().resolve()
    shown: Path | str = path.relative_to(cwd) if path.is_relative_to(cwd) else path
    location = SourceLocation(shown, problem.location.line, problem.location.column)
    return Problem(location, problem.message, problem.severity)


def _summary(result: LoadResult, problems: list[Problem], root: Path, note: str | None = None) -> str:
    line = _counted(result, problems, root)
    return f"{line} {note[0].upper()}{note[1:]}." if note else line


def _counted(result: LoadResult, problems: list[Problem], root: Path) -> str:
    workspace = result.workspace
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    files = len({str(p.location.path) for p in problems})
    contents = (
        f"{len(workspace.campaigns)} campaigns, {len(workspace.segments)} segments, "
        f"{len(workspace.templates.templates)} templates"
    )
    if not problems:
        return f"Workspace {root}: {contents} — no problems."
    counted = f"{errors} error{'s' if errors != 1 else ''}"
    if warnings:
        counted += f", {warnings} warning{'s' if warnings != 1 else ''}"
    return f"Workspace {root}: {counted} in {files} file{'s' if files != 1 else ''} ({contents} valid)."
