"""Load a whole workspace: every file read, every problem collected, nothing raised.

``load_workspace(path)`` reads campaigns/*.yaml, campaigns/segments.yaml, schedules/*.yaml and
the templates/ layout, validates each file's shape against the models, then checks what spans
files: campaign ids unique, referenced templates, segments and named dates existing, broadcast
and per-contact steps not mixed, step ids unique. All problems of all files come back together,
sorted by file and line, so a marketer fixes them in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import Problem, SourceLocation
from engine.workspace.expressions import expression_names
from engine.workspace.labels import Labels, missing_locales
from engine.workspace.models import Campaign, CampaignSource, PostStep, SendStep, WaitStep, WaitUntilDate
from engine.workspace.schedules import PER_CONTACT_DATES, ScheduleFile, Schedules
from engine.workspace.segments import Segment, SegmentsFile
from engine.workspace.templates import TemplateIndex, scan_templates
from engine.workspace.validation import validate_document
from engine.workspace.yaml_source import SourceMap, YamlDocument, read_yaml

ANY = "*"  # in Unloaded: a file that could not even be parsed may have declared any name

SEGMENTS_FILE = "segments.yaml"
_Add = Callable[[tuple[str | int, ...], str], None]
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class Unloaded:
    """Names declared by files that failed to load (:data:`ANY` when a file could not be parsed).

    A campaign that refers to one is held back without a problem of its own: the broken file's
    problem is the one to fix, and repeating it at every reference buries it (one bad date in
    schedules/ would otherwise add an "unknown named date" per campaign using that file).
    """

    segments: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)

    @staticmethod
    def covers(names: set[str], name: str) -> bool:
        return ANY in names or name in names


@dataclass
class Workspace:
    """A loaded workspace; complete and consistent when its :class:`LoadResult` has no errors."""

    root: Path
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    schedules: Schedules = field(default_factory=Schedules)
    templates: TemplateIndex = field(default_factory=lambda: TemplateIndex(Path("templates")))
    unloaded: Unloaded = field(default_factory=Unloaded)

    @property
    def campaigns_dir(self) -> Path:
        return self.root / "campaigns"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def schedules_dir(self) -> Path:
        return self.root / "schedules"

    def campaign(self, campaign_id: str) -> Campaign:
        """The campaign with this id; ``KeyError`` with a did-you-mean when there is none."""
        try:
            return self.campaigns[campaign_id]
        except KeyError:
            raise KeyError(f"no campaign {campaign_id!r}{_suggest(campaign_id, self.campaigns)}") from None

    def campaigns_using(self, template: str) -> list[Campaign]:
        return [c for c in self.campaigns.values() if template in c.templates_used()]


@dataclass
class LoadResult:
    workspace: Workspace
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------------------------------------
# Single files


def load_campaign_file(path: Path, *, default_timezone: str = "UTC") -> tuple[Campaign | None, list[Problem]]:
    """Read and shape-check one campaign file (references to other files are not checked here).

    The id defaults to the file name; the time zone to ``default_timezone`` (``TIDINGS_TIMEZONE``).
    """
    document, problems = read_yaml(path)
    if document is None:
        return None, problems
    if not _is_mapping(document, problems, "a campaign file needs at least name, trigger and steps"):
        return None, problems
    campaign, shape = validate_document(Campaign, document)
    problems.extend(shape)
    if campaign is None or problems:
        return None, problems
    if campaign.id is None:
        campaign.id = path.stem
    if campaign.timezone is None:
        campaign.timezone = default_timezone
    campaign.attach_source(CampaignSource(path, document.source))
    return campaign, problems


def load_segments_file(path: Path) -> tuple[dict[str, Segment], SourceMap | None, list[Problem]]:
    document, problems = read_yaml(path)
    if document is None:
        return {}, None, problems
    if document.data is None:
        return {}, document.source, problems  # an empty segments file is fine: no segments
    if not _is_mapping(document, problems, "segments.yaml holds segments: {NAME: {where: [...]}}"):
        return {}, None, problems
    parsed, shape = validate_document(SegmentsFile, document)
    problems.extend(shape)
    if parsed is None or problems:
        return {}, document.source, problems
    return dict(parsed.segments), document.source, problems


def load_schedule_file(path: Path) -> tuple[ScheduleFile | None, SourceMap | None, list[Problem]]:
    document, problems = read_yaml(path)
    if document is None:
        return None, None, problems
    if document.data is None:
        return ScheduleFile(), document.source, problems
    if not _is_mapping(document, problems, "a schedule file holds dates, ranges and shipping_cutoffs"):
        return None, None, problems
    parsed, shape = validate_document(ScheduleFile, document)
    problems.extend(shape)
    if parsed is not None and parsed.shipping_cutoffs is not None:
        problems.extend(_cutoff_problems(parsed, document.source))
    return (parsed if not problems else None), document.source, problems


def _is_mapping(document: YamlDocument, problems: list[Problem], need: str) -> bool:
    first = SourceLocation(document.path, 1, 1)
    if document.data is None:
        problems.append(Problem(first, f"the file is empty; {need}"))
        return False
    if not isinstance(document.data, dict):
        kind = "a list" if isinstance(document.data, list) else f"the value {document.data!r}"[:80]
        problems.append(
            Problem(first, f"expected a mapping of keys (key: value lines), found {kind}; {need}")
        )
        return False
    return True


def _cutoff_problems(parsed: ScheduleFile, source: SourceMap) -> list[Problem]:
    assert parsed.shipping_cutoffs is not None
    problems: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(parsed.shipping_cutoffs.cutoffs):
        key = (row.country, row.method)
        if key in seen:
            where = source.location(("shipping_cutoffs", "cutoffs", seen[key]))
            problems.append(
                Problem(
                    source.location(("shipping_cutoffs", "cutoffs", index)),
                    f"a second {row.method} cutoff for {row.country} (the first is at line {where.line}); "
                    "one row per country and method",
                )
            )
        seen.setdefault(key, index)
    return problems


# ---------------------------------------------------------------------------------------------
# The whole workspace


def load_workspace(path: Path, *, default_timezone: str = "UTC", default_locale: str = "en") -> LoadResult:
    """Load and check everything under ``path``; never raises for a user's mistake.

    ``default_locale`` (``TIDINGS_DEFAULT_LOCALE``) is the locale of the templates' default
    files, which labels need a text in as well.
    """
    root = Path(path)
    workspace = Workspace(root=root, templates=scan_templates(root / "templates"))
    problems: list[Problem] = []
    if not root.is_dir():
        problems.append(Problem(SourceLocation(root, 1, 1), "the workspace folder does not exist"))
        return LoadResult(workspace, problems)

    _load_segments(workspace, problems)
    _load_schedules(workspace, problems, default_locale)

    loaded: list[Campaign] = []
    for campaign_path in campaign_files(root):
        campaign, found = load_campaign_file(campaign_path, default_timezone=default_timezone)
        problems.extend(found)
        if campaign is not None:
            loaded.append(campaign)

    first_of: dict[str, Campaign] = {}
    for campaign in loaded:
        other = first_of.get(campaign.key)
        if other is not None:
            problems.append(
                Problem(
                    campaign.source.at("id"),
                    f"campaign id '{campaign.key}' is already used by {other.source.path}; ids are unique "
                    "(the id defaults to the file name)",
                )
            )
            continue
        first_of[campaign.key] = campaign
        found = check_campaign(campaign, workspace)
        problems.extend(found)
        if not any(p.severity == "error" for p in found) and not refers_to_unloaded(campaign, workspace):
            workspace.campaigns[campaign.key] = campaign
    problems.sort(key=lambda p: (str(p.location.path), p.location.line, p.location.column))
    return LoadResult(workspace, problems)


def campaign_files(root: Path) -> list[Path]:
    folder = root / "campaigns"
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES and p.name != SEGMENTS_FILE
    )


def _load_segments(workspace: Workspace, problems: list[Problem]) -> None:
    path = workspace.campaigns_dir / SEGMENTS_FILE
    if path.is_file():
        segments, _source, found = load_segments_file(path)
        problems.extend(found)
        workspace.segments.update(segments)
        if any(p.severity == "error" for p in found):
            workspace.unloaded.segments |= _declared(path, ("segments",))


def _declared(path: Path, sections: tuple[str, ...]) -> set[str]:
    """The names a file that failed to load declares under ``sections`` (``{ANY}`` if it cannot be read)."""
    document, _problems = read_yaml(path)
    if document is None or not isinstance(document.data, dict):
        return {ANY}
    names: set[str] = set()
    for section in sections:
        value = document.data.get(section)
        if isinstance(value, dict):
            names.update(str(key) for key in value)
    if "shipping_cutoffs" in document.data:
        names.update(PER_CONTACT_DATES)  # shipping_cutoffs give the per-contact shipping_cutoff
    return names


def _load_schedules(workspace: Workspace, problems: list[Problem], default_locale: str = "en") -> None:
    folder = workspace.schedules_dir
    if not folder.is_dir():
        return
    schedules = workspace.schedules
    origin: dict[str, Path] = {}
    shipping_path: Path | None = None
    label_origin: dict[tuple[str, str], Path] = {}
    template_locales = sorted(
        {default_locale} | {code for info in workspace.templates.templates.values() for code in info.locales}
    )
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES):
        parsed, source, found = load_schedule_file(path)
        problems.extend(found)
        if parsed is None or source is None:
            workspace.unloaded.dates |= _declared(path, ("dates", "ranges"))
            continue
        _merge_labels(parsed, source, schedules, label_origin, template_locales, problems)
        for section, values in (("dates", parsed.dates), ("ranges", parsed.ranges)):
            for name, value in values.items():
                if name in PER_CONTACT_DATES:
                    problems.append(
                        Problem(
                            source.location((section, name), at_key=True), f"'{name}' is a reserved date name"
                        )
                    )
                elif name in origin:
                    problems.append(
                        Problem(
                            source.location((section, name), at_key=True),
                            f"'{name}' is already defined in {origin[name]}; "
                            "names are unique across schedules/",
                        )
                    )
                else:
                    origin[name] = path
                    if section == "dates":
                        schedules.dates[name] = value  # type: ignore[assignment]
                    else:
                        schedules.ranges[name] = value  # type: ignore[assignment]
        if parsed.shipping_cutoffs is not None:
            if shipping_path is not None:
                problems.append(
                    Problem(
                        source.location(("shipping_cutoffs",), at_key=True),
                        f"shipping_cutoffs are already defined in {shipping_path}; keep one season's cutoffs",
                    )
                )
            else:
                shipping_path = path
                schedules.shipping = parsed.shipping_cutoffs


def _merge_labels(
    parsed: ScheduleFile,
    source: SourceMap,
    schedules: Schedules,
    origin: dict[tuple[str, str], Path],
    template_locales: list[str],
    problems: list[Problem],
) -> None:
    """One file's ``labels:`` into the workspace's; a code labelled twice is an error at the second."""
    for kind, codes in parsed.labels.items():
        fresh: dict[str, dict[str, str]] = {}
        for code, texts in codes.items():
            where = source.location(("labels", kind, code), at_key=True)
            key = (kind, code.casefold())
            if key in origin:
                problems.append(
                    Problem(
                        where,
                        f"label {kind}.{code} is already defined in {origin[key]}; "
                        "each code has one label per kind across schedules/",
                    )
                )
                continue
            origin[key] = source.path
            fresh[code] = texts
            missing = missing_locales(texts, template_locales)
            if missing:
                problems.append(
                    Problem(
                        where,
                        f"label {kind}.{code} has no {', '.join(missing)} text; templates are written in "
                        f"{', '.join(template_locales)} (that mail shows the default locale's words)",
                        severity="warning",
                    )
                )
        schedules.labels.add(kind, fresh)


def load_schedules(root: Path, *, default_locale: str = "en") -> tuple[Schedules, list[Problem]]:
    """Only schedules/ of the workspace at ``root`` (dates, cutoffs, labels), with its problems."""
    workspace = Workspace(root=Path(root), templates=scan_templates(Path(root) / "templates"))
    problems: list[Problem] = []
    _load_schedules(workspace, problems, default_locale)
    return workspace.schedules, problems


def load_labels(root: Path) -> Labels:
    """The valid ``labels:`` of a workspace's schedules/ (for rendering; ``validate`` reports the rest)."""
    workspace = Workspace(root=Path(root))
    _load_schedules(workspace, [])
    return workspace.schedules.labels


# ---------------------------------------------------------------------------------------------
# Checks across files


def check_campaign(campaign: Campaign, workspace: Workspace) -> list[Problem]:
    """References and flow rules of one shape-valid campaign, each at the line it concerns."""
    problems: list[Problem] = []
    at = campaign.source.at

    def add(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(at(*loc), message))

    _check_mixing(campaign, add)
    _check_step_ids(campaign, add)
    _check_templates(campaign, workspace.templates, add)
    _check_care(campaign, add)

    if campaign.audience is not None and campaign.audience.segment is not None:
        name = campaign.audience.segment
        if name not in workspace.segments and not Unloaded.covers(workspace.unloaded.segments, name):
            add(
                ("audience", "segment"),
                f"unknown segment '{name}'{_suggest(name, workspace.segments)}"
                f"{_known('segments in campaigns/segments.yaml', workspace.segments)}",
            )

    calendar = campaign.trigger.calendar
    if calendar is not None:
        names = workspace.schedules.date_names()
        if Unloaded.covers(workspace.unloaded.dates, calendar.date) and calendar.date not in names:
            pass  # the file that declares it failed to load: its own problem says why
        elif calendar.date not in names:
            add(
                ("trigger", "calendar", "date"),
                f"unknown named date '{calendar.date}'{_suggest(calendar.date, names)}"
                f"{_known('dates in schedules/', names)}",
            )
        elif calendar.date in PER_CONTACT_DATES and campaign.is_broadcast:
            add(
                ("trigger", "calendar", "date"),
                f"{calendar.date} is a per-contact date; a broadcast (no audience) needs a global date "
                "such as christmas",
            )
    if campaign.is_broadcast and campaign.trigger.local_time:
        add(
            ("trigger", campaign.trigger.kind, "local_time"),
            "local_time means each contact's own zone; a broadcast has no contacts: remove it",
        )
    return problems


def refers_to_unloaded(campaign: Campaign, workspace: Workspace) -> bool:
    """Does the campaign use a segment or named date that only a file that failed to load could give?"""
    segment = campaign.audience.segment if campaign.audience is not None else None
    if (
        segment is not None
        and segment not in workspace.segments
        and Unloaded.covers(workspace.unloaded.segments, segment)
    ):
        return True
    calendar = campaign.trigger.calendar
    if calendar is not None and calendar.date not in workspace.schedules.date_names():
        return Unloaded.covers(workspace.unloaded.dates, calendar.date)
    return False


def _check_mixing(campaign: Campaign, add: _Add) -> None:
    stem = campaign.source.path.stem
    if campaign.is_broadcast:
        for step in campaign.iter_steps():
            if not isinstance(step, PostStep):
                add(
                    _step_loc(step.path),
                    f"a campaign without audience is a broadcast of post steps; this {step.kind} step is per "
                    "contact: move it into its own campaign file with an audience "
                    f"(e.g. campaigns/{stem}-email.yaml)",
                )
    else:
        for step in campaign.iter_steps():
            if isinstance(step, PostStep):
                add(
                    _step_loc(step.path),
                    "post steps are broadcasts (one X post per occurrence, not per contact) and cannot "
                    f"be mixed with a per-contact campaign: move them into a campaign without audience "
                    f"(e.g. campaigns/{stem}-posts.yaml)",
                )


#: The event whose data names a gift card's recipient: ``to: recipient`` needs it as the trigger.
RECIPIENT_EVENT = "gift_card.purchased"


def _check_care(campaign: Campaign, add: _Add) -> None:
    """Recipient sends, date waits, topics and holds: each where it can mean something."""
    trigger = campaign.trigger.event
    for step in campaign.iter_steps():
        recipient = isinstance(step, SendStep) and step.send.to == "recipient"
        if recipient and (trigger is None or trigger.type != RECIPIENT_EVENT):
            add(
                (*_step_loc(step.path), "send", "to"),
                f"to: recipient sends to the gift card's recipient, which only a campaign triggered "
                f"by {RECIPIENT_EVENT} knows; trigger on event {{type: {RECIPIENT_EVENT}}} or remove it",
            )
        if isinstance(step, WaitStep) and isinstance(step.wait, WaitUntilDate):
            names = expression_names(step.wait.until_date)
            if trigger is None and "event" in names:
                add(
                    (*_step_loc(step.path), "wait", "until_date"),
                    "until_date reads event, but this campaign is not triggered by an event",
                )
    if campaign.topic is not None and campaign.is_broadcast:
        add(("topic",), "a broadcast reaches no contact, so nobody can leave its topic: remove topic")
    if campaign.category.value == "transactional":
        if campaign.topic is not None:
            add(
                ("topic",),
                "a transactional campaign has no topic: people cannot leave messages about their own "
                "orders and cards (remove topic, or make the campaign marketing)",
            )
        if campaign.limits.hold_marketing_while is not None:
            add(
                ("limits", "hold_marketing_while"),
                "hold_marketing_while holds promotions; this campaign is transactional and is never held",
            )


def _check_step_ids(campaign: Campaign, add: _Add) -> None:
    first: dict[str, str] = {}
    for step in campaign.iter_steps():
        if step.id is None:
            continue
        if step.id in first:
            line = campaign.source.step(first[step.id]).line
            add(
                (*_step_loc(step.path), "id"),
                f"step id '{step.id}' is already used by the step at line {line}",
            )
        else:
            first[step.id] = step.path
    auto = {f"s{step.path}" for step in campaign.iter_steps() if step.id is None}
    for step_id, path in first.items():
        if step_id in auto:
            add(
                (*_step_loc(path), "id"),
                f"step id '{step_id}' looks like an automatic id of another step; choose a descriptive id",
            )


def _check_templates(campaign: Campaign, templates: TemplateIndex, add: _Add) -> None:
    for step in campaign.iter_steps():
        base = _step_loc(step.path)
        if isinstance(step, SendStep):
            if step.send.variants is not None:
                refs = [
                    ((*base, "send", "variants", i, "template"), v.template)
                    for i, v in enumerate(step.send.variants)
                ]
            else:
                refs = [((*base, "send", "template"), step.send.template or "")]
            for loc, name in refs:
                _check_template(name, "email", templates, loc, add)
        elif isinstance(step, PostStep):
            _check_template(step.post.template, "post", templates, (*base, "post", "template"), add)


def _check_template(
    name: str, kind: str, templates: TemplateIndex, loc: tuple[str | int, ...], add: _Add
) -> None:
    wanted = "email.mjml" if kind == "email" else "post.txt"
    candidates = templates.email_names() if kind == "email" else templates.post_names()
    info = templates.get(name)
    if info is None:
        hint = _suggest(name, candidates or templates.names())
        add(loc, f"unknown template '{name}' (no folder templates/{name}/ with {wanted}){hint}")
    elif (kind == "email" and not info.has_email) or (kind == "post" and not info.has_post):
        step = "a send step" if kind == "email" else "a post step"
        add(loc, f"template '{name}' has no {wanted} ({step} needs templates/{name}/{wanted})")


def _step_loc(path: str) -> tuple[str | int, ...]:
    loc: list[str | int] = ["steps"]
    for part in path.split("."):
        loc.append(int(part) if part.isdigit() else part)
    return tuple(loc)


def _suggest(name: str, candidates: Iterable[str]) -> str:
    hint = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def _known(what: str, names: Iterable[str]) -> str:
    listed = sorted(names)
    if not listed:
        return f" (there are no {what})"
    shown = ", ".join(listed[:12]) + (", …" if len(listed) > 12 else "")
    return f" ({what}: {shown})"
