"""The public app's status page (``GET /``, JSON at ``/api/status``): what runs, and what happens next.

What it shows, for whoever opens the link ``tidings run`` prints:

* each campaign with the state it is really in — its YAML ``status`` overridden by an operator's
  ``pause``/``cancel`` (``campaign_state``) — and its trigger;
* **next up**: the next few moments something is sent, with the campaign, how many contacts it
  reaches and the time in the shop's zone (and the zone of its first contacts when that
  differs), from the runtime's :func:`engine.runtime.upcoming.next_sends` through an injected
  :data:`NextUpProvider` (:func:`workspace_next_up` builds it); without one the page says what
  would show them;
* links to ``/healthz`` and ``/metrics``, and which channels send.

The workspace is read from disk and kept until a campaign or schedule file changes (a scan of
modification times, ~1 ms, against ~200 ms to load and validate the shipped workspace); the
daemon may pass its own live copy instead (``workspace``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.display import local_text, zone_label
from engine.runtime.controls import controls
from engine.runtime.occurrences import is_active
from engine.runtime.upcoming import NextSend, next_sends
from engine.settings import Settings
from engine.web.preview.catalog import describe_trigger
from engine.workspace.loader import Workspace, load_workspace

NEXT_UP = 5
KEEP_NEXT_UP = timedelta(seconds=30)


#: ``(now, how_many) -> the next sends``, soonest first (:func:`workspace_next_up` is the daemon's).
NextUpProvider = Callable[[datetime, int], list[NextSend]]
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
        lines.append(CampaignLine(key, campaign.name, state, describe_trigger(campaign), note))
    return lines


def moment_view(send: NextSend, settings: Settings, names: dict[str, str]) -> dict[str, Any]:
    shop_zone = settings.zone
    first = "" if send.zone.key == shop_zone.key else f"first contacts at {send.label()}"
    return {
        "campaign": send.campaign_id,
        "name": names.get(send.campaign_id, send.campaign_id),
        "occurrence": send.occurrence,
        "at": send.at.isoformat(),
        "when": local_text(send.at, shop_zone),
        "first": first,
        "planned": send.planned,
        "audience": None if send.posts else send.reach,  # a broadcast reaches no contact list
        "posts": send.reach if send.posts else None,
        "posts_text": send.who() if send.posts else None,  # "a post", in NextSend's own words
    }


def workspace_next_up(
    engine: Engine, workspace: WorkspaceSource, settings: Settings, *, keep: timedelta = KEEP_NEXT_UP
) -> NextUpProvider:
    """The next sends of every running campaign, from :func:`engine.runtime.upcoming.next_sends`.

    Running means ``status: active`` and not paused or cancelled by an operator. The answer is
    kept ``keep`` (it counts audiences: tens of milliseconds a campaign on 5,000 contacts), so a
    page reloaded in a loop does not keep the database busy.
    """
    lock = threading.Lock()
    kept: dict[int, tuple[datetime, list[NextSend]]] = {}

    def provider(now: datetime, count: int) -> list[NextSend]:
        with lock:
            known = kept.get(count)
            if known is not None and timedelta(0) <= now - known[0] < keep:
                return known[1]
        current = workspace()
        sends: list[NextSend] = []
        with engine.connect() as conn:
            overrides = controls(conn)
            for campaign in current.campaigns.values():
                if not is_active(campaign) or overrides.get(campaign.key, "active") != "active":
                    continue
                sends.extend(next_sends(conn, current, campaign, settings=settings, now=now, limit=count))
        found = sorted(sends, key=lambda send: (send.at, send.campaign_id))[:count]
        with lock:
            kept[count] = (now, found)
        return found

    return provider


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
