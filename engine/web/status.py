"""The public app's status page (``GET /``, JSON at ``/api/status``): what runs, and what happens next.

What it shows, for whoever opens the link ``tidings run`` prints:

* each campaign with the state it is really in — its YAML ``status`` overridden by an operator's
  ``pause``/``cancel`` (``campaign_state``) — and its trigger;
* **next up**: the next few moments something is sent, with the campaign, how many contacts it
  would reach and the time in the shop's zone (or "10:00 in each contact's zone"). The daemon
  computes these with the planner (:data:`NextUpProvider`, injected, because only the runtime
  knows its occurrences and audiences); without one (``tidings serve`` alone) the page says
  what would show them;
* links to ``/healthz`` and ``/metrics``, and which channels send.

The workspace is read from disk and kept until a campaign or schedule file changes (a scan of
modification times, ~1 ms, against ~200 ms to load and validate the shipped workspace); the
daemon may pass its own live copy instead (``workspace``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.display import local_text, zone_label
from engine.runtime.controls import controls
from engine.settings import Settings
from engine.workspace.loader import Workspace, load_workspace

NEXT_UP = 5


@dataclass(frozen=True, slots=True)
class UpcomingMoment:
    """One moment something will be sent, as the daemon's planner sees it.

    ``at`` is when it fires (aware). For a ``local_time`` occurrence, ``wall`` is the local wall
    time each contact gets it at (naive) and ``at`` the first instant anywhere; ``wall`` None
    with ``local_time`` means a per-contact date (each contact's own shipping cutoff). ``audience`` is
    the number of contacts it would reach (``plan``'s count), None when not known.
    """

    campaign: str
    at: datetime
    audience: int | None
    occurrence: str = ""
    step: str | None = None
    local_time: bool = False
    wall: datetime | None = None


#: ``(now, how_many) -> the next moments``, soonest first. The daemon supplies it.
NextUpProvider = Callable[[datetime, int], list[UpcomingMoment]]
WorkspaceSource = Callable[[], Workspace]


@dataclass(frozen=True, slots=True)
class CampaignLine:
    id: str
    name: str
    state: str  # active | paused | draft | cancelled
    trigger: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "trigger": self.trigger,
            "note": self.note,
        }


class CachedWorkspace:
    """The workspace from disk, loaded again only when a YAML file under it changes."""

    FOLDERS = ("campaigns", "schedules")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._signature: tuple[tuple[str, int], ...] | None = None
        self._workspace: Workspace | None = None
        self._lock = threading.Lock()

    def _scan(self) -> tuple[tuple[str, int], ...]:
        root = self.settings.workspace_dir
        found = []
        for folder in self.FOLDERS:
            for path in sorted((root / folder).glob("*.yaml")):
                try:
                    found.append((str(path), path.stat().st_mtime_ns))
                except OSError:
                    continue
        return tuple(found)

    def __call__(self) -> Workspace:
        signature = self._scan()
        with self._lock:
            if self._workspace is None or signature != self._signature:
                loaded = load_workspace(self.settings.workspace_dir, default_timezone=self.settings.timezone)
                self._workspace, self._signature = loaded.workspace, signature
            return self._workspace


def _trigger(campaign: Any) -> str:
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
    return f"on each {spec.type} event"


def campaign_lines(workspace: Workspace, engine: Engine) -> list[CampaignLine]:
    """Every campaign with its real state: the operator's pause or cancel wins over the YAML status."""
    try:
        with engine.connect() as conn:
            overrides = controls(conn)
    except SQLAlchemyError:
        overrides = {}
    lines = []
    for key, campaign in sorted(workspace.campaigns.items()):
        status = str(getattr(campaign.status, "value", campaign.status))
        control = overrides.get(key, "active")
        state, note = status, ""
        if status == "active" and control != "active":
            state, note = control, f"{control} by an operator (tidings resume {key})"
        lines.append(CampaignLine(key, campaign.name, state, _trigger(campaign), note))
    return lines


def moment_view(moment: UpcomingMoment, settings: Settings, names: dict[str, str]) -> dict[str, Any]:
    zone = settings.zone
    if moment.local_time and moment.wall is not None:
        when = f"{moment.wall:%a %d %b %Y %H:%M} in each contact's own time zone"
        first = f"from {local_text(moment.at, zone)} shop time"
    elif moment.local_time:  # a per-contact date (a shipping cutoff): each contact has their own day
        when = "on each contact's own date, in their time zone"
        first = f"from {local_text(moment.at, zone)} shop time"
    else:
        when, first = local_text(moment.at, zone), ""
    return {
        "campaign": moment.campaign,
        "name": names.get(moment.campaign, moment.campaign),
        "step": moment.step,
        "occurrence": moment.occurrence,
        "at": moment.at.isoformat(),
        "when": when,
        "first": first,
        "local_time": moment.local_time,
        "audience": moment.audience,
    }


def status_view(
    settings: Settings,
    engine: Engine,
    now: datetime,
    workspace: Workspace,
    next_up: NextUpProvider | None,
) -> dict[str, Any]:
    """Everything the page and its JSON twin show."""
    lines = campaign_lines(workspace, engine)
    names = {line.id: line.name for line in lines}
    upcoming = next_up(now, NEXT_UP) if next_up is not None else None
    moments = None if upcoming is None else [moment_view(m, settings, names) for m in upcoming[:NEXT_UP]]
    return {
        "shop": settings.shop.name,
        "now": now.isoformat(),
        "now_text": local_text(now, settings.zone),
        "timezone": settings.zone.key,
        "zone_label": zone_label(settings.zone),
        "workspace": Path(settings.workspace_dir).name,
        "channels": {"email": settings.email_channel.value, "social": settings.social_channel.value},
        "campaigns": [line.as_dict() for line in lines],
        "running": sum(1 for line in lines if line.state == "active"),
        "next_up": moments,
        "links": {"health": "/healthz", "metrics": "/metrics", "json": "/api/status"},
    }
