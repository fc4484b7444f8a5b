"""The workspace as the preview's index shows it: campaigns, templates, problems, next fires.

Loading and checking a workspace reads every YAML file and renders every template once,
so the result is cached until the file watcher reports a save (:meth:`WorkspaceCatalog.invalidate`);
the pages in between read the cache. Every problem is kept with its file and line and
attached to the campaign or template it belongs to, so the index shows it where the
marketer will look for it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock
from engine.errors import Problem, SourceLocation
from engine.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from engine.runtime.upcoming import NextSend
    from engine.workspace.loader import Workspace
    from engine.workspace.models import Campaign

log = logging.getLogger(__name__)

HORIZON_DAYS = 120
FIRES_SHOWN = 5


def problem_view(problem: Problem, workspace: Path) -> dict[str, Any]:
    """A problem for a page: the path relative to the workspace, the line, the message."""
    path = _relative(Path(problem.location.path), workspace)
    return {
        "path": path,
        "line": problem.location.line,
        "column": problem.location.column,
        "where": f"{path}:{problem.location.line}",
        "message": problem.message,
        "severity": problem.severity,
        "text": f"{path}:{problem.location.line}: {problem.message}",
    }


def _relative(path: Path, workspace: Path) -> str:
    try:
        return path.resolve().relative_to(workspace).as_posix()
    except (ValueError, OSError):
        return str(path)


@dataclass(frozen=True, slots=True)
class Sender:
    """The campaign step that sends a template: its id and name go into links and headers."""

    campaign_id: str
    campaign_name: str
    step_id: str
    marketing: bool


@dataclass
class TemplateInfo:
    name: str
    kind: str  # email | post
    locales: list[str]
    has_sample: bool
    senders: list[Sender] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    written_as_marketing: bool = True  # shows the unsubscribe link (see engine.render.checks)

    @property
    def campaigns(self) -> list[str]:
        return list(dict.fromkeys(s.campaign_id for s in self.senders))

    @property
    def sender(self) -> Sender | None:
        return self.senders[0] if self.senders else None

    @property
    def marketing(self) -> bool:
        """Marketing when a marketing campaign sends it; when no campaign does, as it is written."""
        if self.senders:
            return any(s.marketing for s in self.senders)
        return self.written_as_marketing

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "locales": list(self.locales),
            "has_sample": self.has_sample,
            "campaigns": self.campaigns,
            "marketing": self.marketing,
            "problems": list(self.problems),
        }


@dataclass
class CampaignInfo:
    id: str
    name: str
    status: str
    category: str
    trigger: str
    file: str
    templates: list[str]
    fires: list[tuple[str, str]] = field(default_factory=list)  # (key, shown)
    dates: tuple[date, date] | None = None  # first and last day it names (window, or ``at`` day)
    next_fires_note: str = ""
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: What went wrong at send time, from the store: flows ended early, messages that failed to render.
    outcomes: list[str] = field(default_factory=list)

    def fire_dicts(self) -> list[dict[str, str]]:
        return [{"occurrence": key, "when": shown} for key, shown in self.fires]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "category": self.category,
            "trigger": self.trigger,
            "file": self.file,
            "templates": list(self.templates),
            "next_fires": [shown for _key, shown in self.fires],
            "next_fires_note": self.next_fires_note,
            "outcomes": list(self.outcomes),
            "fires": self.fire_dicts(),
            "problems": list(self.problems),
        }


@dataclass
class CheckResults:
    """Rendering checks by template folder name, and the rest (campaign step lines) by file."""

    by_template: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_file: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class WorkspaceView:
    campaigns: list[CampaignInfo]
    templates: list[TemplateInfo]
    general_problems: list[dict[str, Any]]
    all_problems: list[Problem]
    workspace_dir: Path
    now: datetime
    workspace: Workspace
    horizon_days: int = HORIZON_DAYS

    @property
    def now_text(self) -> str:
        return self.now.strftime("%Y-%m-%d %H:%M %Z")

    def template(self, name: str) -> TemplateInfo | None:
        return next((t for t in self.templates if t.name == name), None)

    def problem_dicts(self) -> list[dict[str, Any]]:
        return [problem_view(p, self.workspace_dir) for p in self.all_problems]


class WorkspaceCatalog:
    """Loads, checks and summarises the workspace once per change; thread-safe."""

    def __init__(self, settings: Settings, clock: Clock, engine: Engine | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = engine
        self._view: WorkspaceView | None = None
        self._checks: CheckResults | None = None
        self._generation = 0  # bumped by every invalidate: a result computed across a save is not kept
        self._lock = threading.Lock()
        self._checks_lock = threading.Lock()

    def workspace(self) -> Workspace:
        """The loaded workspace (its valid campaigns), as the index shows it."""
        return self.current().workspace

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._view = None
            self._checks = None

    def current(self) -> WorkspaceView:
        with self._lock:
            if self._view is not None:
                return self._view
            generation = self._generation
        view = self._load()
        with self._lock:
            if generation == self._generation:
                self._view = view
        return view

    # -- loading --------------------------------------------------------------------------------

    def _load(self) -> WorkspaceView:
        from engine.render import Renderer
        from engine.workspace.loader import load_workspace

        workspace_dir = self.settings.workspace_dir
        now = self.clock.now().astimezone(self.settings.zone)
        loaded = load_workspace(workspace_dir, default_timezone=self.settings.timezone)
        problems: list[Problem] = list(loaded.problems)
        workspace = loaded.workspace
        renderer = Renderer(self.settings, workspace_dir / "templates", labels=workspace.schedules.labels)

        files = self._campaign_files(workspace)
        templates = self._templates(renderer, [c for _path, c in files if c is not None], problems)
        claimed: set[int] = {id(p) for p in problems if self._owned_by_template(p)}

        infos = []
        for path, campaign in files:
            if campaign is None:
                info = CampaignInfo(path.stem, "", "invalid", "", "", _relative(path, workspace_dir), [])
                info.next_fires_note = "fix the problems to see its fires"
            else:
                info = self._campaign(campaign, workspace, now, loaded=campaign.key in workspace.campaigns)
            for problem in problems:
                if Path(problem.location.path).resolve() == path.resolve():
                    info.problems.append(problem_view(problem, workspace_dir))
                    claimed.add(id(problem))
            infos.append(info)
        general = [problem_view(p, workspace_dir) for p in problems if id(p) not in claimed]
        return WorkspaceView(infos, templates, general, problems, workspace_dir, now, workspace)

    def _campaign_files(self, workspace: Any) -> list[tuple[Path, Any]]:
        """Every campaign file with its campaign; one that failed the workspace's checks (an unknown
        template, say) is parsed again on its own so the index can still show what it is."""
        from engine.workspace.loader import campaign_files, load_campaign_file

        by_path = {Path(c.source.path).resolve(): c for c in workspace.campaigns.values()}
        found = []
        for path in campaign_files(workspace.root):
            campaign = by_path.get(path.resolve())
            if campaign is None:
                campaign, _problems = load_campaign_file(path, default_timezone=self.settings.timezone)
            found.append((path, campaign))
        return found

    def checks(self) -> CheckResults:
        """``validate``'s rendering checks: every template with its sample, and the names each
        template reads against the campaign flows that send it. Cached like the structure, but
        computed only when the index asks: it renders every locale file, which takes seconds on a
        real workspace, and must not delay the template page after a save."""
        with self._checks_lock:  # one run at a time; pages wanting only the structure do not wait
            with self._lock:
                if self._checks is not None:
                    return self._checks
                generation = self._generation
            checks = self._run_checks()
            with self._lock:
                if generation == self._generation:
                    self._checks = checks
            return checks

    def _run_checks(self) -> CheckResults:
        from engine.render.checks import check_workspace
        from engine.workspace.loader import load_workspace

        workspace_dir = self.settings.workspace_dir
        templates_dir = (workspace_dir / "templates").resolve()
        workspace = load_workspace(workspace_dir, default_timezone=self.settings.timezone).workspace
        try:
            problems = check_workspace(workspace, self.settings)
        except Exception as exc:  # shown on the index rather than failing the page
            log.exception("template checks failed")
            problems = [Problem(SourceLocation(templates_dir / "."), f"template checks failed: {exc}")]
        results = CheckResults()
        for problem in problems:
            view = problem_view(problem, workspace_dir)
            path = Path(problem.location.path).resolve()
            try:
                parts = path.relative_to(templates_dir).parts
            except ValueError:
                results.by_file.setdefault(view["path"], []).append(view)
                continue
            if len(parts) > 1 and not parts[0].startswith("_"):
                results.by_template.setdefault(parts[0], []).append(view)
            else:
                results.by_file.setdefault(view["path"], []).append(view)
        return results

    def _owned_by_template(self, problem: Problem) -> bool:
        templates_dir = (self.settings.workspace_dir / "templates").resolve()
        path = Path(problem.location.path).resolve()
        try:
            parts = path.relative_to(templates_dir).parts
        except ValueError:
            return False
        return len(parts) > 1 and not parts[0].startswith("_")

    def _templates(self, renderer: Any, campaigns: list[Any], problems: list[Problem]) -> list[TemplateInfo]:
        from engine.render import RenderError
        from engine.render.checks import written_as_marketing

        senders: dict[str, list[Sender]] = {}
        for campaign in sorted(campaigns, key=lambda c: c.key):
            for step in campaign.iter_steps():
                for template in step.templates():
                    senders.setdefault(template, []).append(
                        Sender(
                            campaign.key, campaign.name, step.step_id, str(campaign.category) == "marketing"
                        )
                    )
        infos = []
        for name in renderer.templates():
            try:
                kind = renderer.kind(name)
                locales = list(dict.fromkeys(locale for _path, locale in renderer.locale_files(name)))
            except RenderError as exc:
                problems.append(exc.as_problem())
                continue
            folder = renderer.templates_dir / name
            info = TemplateInfo(
                name,
                kind,
                locales,
                (folder / "sample.yaml").is_file(),
                senders.get(name, []),
                # Only a template no campaign sends is judged by how it is written (a parse per file).
                written_as_marketing=name in senders or written_as_marketing(renderer, name),
            )
            for problem in problems:
                path = Path(problem.location.path).resolve()
                if path == folder.resolve() or folder.resolve() in path.parents:
                    info.problems.append(problem_view(problem, self.settings.workspace_dir))
            infos.append(info)
        return infos

    def _first_sends(
        self, campaign: Campaign, workspace: Workspace, now: datetime
    ) -> list[tuple[str, str]] | None:
        """The campaign's next sends from its own audience (:mod:`engine.runtime.upcoming`), as the
        daemon's banner and ``plan`` show them; None without a database to count the audience in."""
        if self.engine is None:
            return None
        from engine.runtime.upcoming import next_sends

        try:
            with self.engine.connect() as conn:
                sends = next_sends(
                    conn, workspace, campaign, settings=self.settings, now=now, limit=FIRES_SHOWN
                )
        except SQLAlchemyError:  # a database without tables yet: show the fires as triggered
            return None
        return [(send.occurrence, _describe_send(send)) for send in sends]

    def _outcomes(self, campaign_id: str) -> list[str]:
        """Named outcomes recorded at send time (never only a log line): flows that ended on an
        expression error, with the expression and its file and line, and render errors."""
        if self.engine is None:
            return []
        from sqlalchemy import func, select

        from engine.runtime.exits import example_reasons, exit_counts
        from engine.store.models import Delivery

        delivery = Delivery.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.connect() as conn:
                exits: dict[str, int] = dict(exit_counts(conn, campaign_id).get(campaign_id, {}))
                examples = example_reasons(conn, campaign_id) if exits else []
                render_errors = conn.execute(
                    select(func.count()).where(
                        delivery.c.campaign_id == campaign_id, delivery.c.reason == "render_error"
                    )
                ).scalar_one()
        except SQLAlchemyError:
            return []
        found = [f"{count:,} flows ended early: {kind}" for kind, count in sorted(exits.items())]
        found += examples
        if render_errors:
            found.append(f"{render_errors:,} messages failed to render (see tidings stats)")
        return found

    def _campaign(self, campaign: Any, workspace: Any, now: datetime, *, loaded: bool) -> CampaignInfo:
        info = CampaignInfo(
            id=campaign.key,
            name=campaign.name,
            status=str(getattr(campaign.status, "value", campaign.status)),
            category=str(getattr(campaign.category, "value", campaign.category)),
            trigger=describe_trigger(campaign),
            file=_relative(Path(campaign.source.path), self.settings.workspace_dir),
            templates=campaign.templates_used(),
            dates=dated_span(campaign),
        )
        info.outcomes = self._outcomes(campaign.key)
        if campaign.trigger.kind == "event":
            info.next_fires_note = f"on each {campaign.trigger.spec.type} event"
            return info
        from engine.runtime.occurrences import due_occurrences

        try:
            found = due_occurrences(
                campaign,
                workspace.schedules,
                now,
                now + timedelta(days=HORIZON_DAYS),
                default_zone=self.settings.zone,
                include_inactive=True,
            )
        except Exception as exc:  # a campaign whose dates cannot be resolved still shows its problem
            info.next_fires_note = f"cannot compute: {exc}"
            return info
        sends = self._first_sends(campaign, workspace, now) if loaded else None
        if sends:
            info.fires = sends
        else:  # no database, nobody in the audience yet, or a campaign that does not load
            info.fires = [(o.key, describe_occurrence(o, campaign.zone)) for o in found[:FIRES_SHOWN]]
            if sends == [] and found:
                info.next_fires_note = "nobody in its audience yet: fires as listed"
        if not info.fires:
            info.next_fires_note = f"none in the next {HORIZON_DAYS} days"
        elif not loaded:
            info.next_fires_note = "would fire as listed; nothing is scheduled until its problems are fixed"
        elif info.status != "active":
            info.next_fires_note = f"{info.status}: would fire as listed once active"
        return info


def dated_span(campaign: Any) -> tuple[date, date] | None:
    """The first and last day a campaign names: its window, else the day of its ``at`` trigger."""
    window = getattr(campaign, "window", None)
    if window is not None:
        return (window.start, window.end)
    if campaign.trigger.kind == "at":
        day = campaign.trigger.spec.time.date()
        return (day, day)
    return None


def _describe_send(send: NextSend) -> str:
    return send.describe() if send.state != "upcoming" else f"first send {send.describe()}"


def describe_trigger(campaign: Any) -> str:
    trigger = campaign.trigger
    spec = trigger.spec
    local = " (each contact's local time)" if trigger.local_time else ""
    if trigger.kind == "schedule":
        return f"cron {spec.cron}{local}"
    if trigger.kind == "at":
        return f"at {spec.time:%Y-%m-%d %H:%M}{local or ' ' + str(campaign.zone)}"
    if trigger.kind == "calendar":
        offsets = ", ".join(str(o) for o in spec.offsets)
        return f"{spec.date} {offsets} at {spec.at:%H:%M}{local}"
    where = f" where {spec.where}" if spec.where else ""
    once = ", once per contact" if spec.once_per_contact else ""
    return f"event {spec.type}{where}{once}"


def describe_occurrence(occurrence: Any, zone: Any) -> str:
    if occurrence.per_contact_date:
        at = f"{occurrence.at:%H:%M} " if occurrence.at else ""
        where = "local time" if occurrence.local_time else str(zone)
        first = occurrence.fire_at.astimezone(UTC)
        return (
            f"{occurrence.key}: {at}{where} on each contact's own date, earliest {first:%Y-%m-%d %H:%M} UTC"
        )
    if occurrence.local_time and occurrence.local is not None:
        return f"{occurrence.local:%Y-%m-%d %H:%M} each contact's local time"
    return f"{occurrence.fire_at.astimezone(zone):%Y-%m-%d %H:%M} {zone}"
