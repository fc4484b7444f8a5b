"""Walking a season on a simulated clock with the daemon's own parts.

Nothing here re-implements the daemon: occurrences come from the same APScheduler trigger
objects (``due_occurrences`` walks their ``get_next_fire_time``), firing goes through
``fire``, events through the daemon's event pump, flows through ``advance_due``, A/B tests
through ``decide_due_tests`` and sends through the same
:class:`~engine.runtime.dispatcher.Dispatcher` with file-outbox channels. Only the clock differs,
and it jumps straight to the next moment anything can happen: a trigger fire, a shop event that
starts a flow, a flow waking up, an A/B test coming due, a message coming due, or the rate limiter
freeing up. What the daemon cannot know — how recipients respond — comes from a seeded engagement
model (:mod:`engine.simulation.engagement`) that draws clicks and orders after each dispatch, so
tests are decided and holdouts measured as they would be on real feedback.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.demo.engagement import DEMO_ENGAGEMENT, EngagementRates
from engine.runtime import flows
from engine.runtime.ab_tests import decide_due_tests
from engine.runtime.dispatcher import Dispatcher
from engine.runtime.event_pump import pump_due_events, trigger_types
from engine.runtime.fire import fire
from engine.runtime.occurrences import Occurrence, due_occurrences
from engine.settings import EmailChannelKind, Settings, SocialChannelKind
from engine.simulation.copy import copy_store, prepare_runtime
from engine.simulation.engagement import EngagementModel
from engine.simulation.report import SeasonReport, build_report
from engine.store.models import AbTest, Delivery, DeliveryState, Enrolment, EnrolmentState, Post, ShopEvent
from engine.workspace.loader import Workspace

log = logging.getLogger(__name__)

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
POST = Post.__table__  # type: ignore[attr-defined]
ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
AB_TEST = AbTest.__table__  # type: ignore[attr-defined]
WAITING = (DeliveryState.pending.value, DeliveryState.retry.value)
LIVE = (EnrolmentState.active.value, EnrolmentState.waiting.value)


@dataclass(frozen=True)
class SimulationOptions:
    start: date
    end: date
    work_dir: Path
    outbox_dir: Path
    #: Where the simulated store is written (and kept): ``tidings simulate --keep FILE``; by default a
    #: scratch file under ``work_dir``, replaced by the next simulation.
    database_file: Path | None = None
    #: Send threads. The file outbox is CPU work (MIME building) under the GIL, not I/O, so every
    #: extra thread only adds GIL hand-offs. Measured on the 1,000-contact season: 1 thread 24 s
    #: CPU / 25 s wall, 4 threads 32 s CPU / 31 s wall.
    concurrency: int = 1
    #: How simulated recipients click and buy (None: nobody does); the demo shop's rates by default.
    engagement: EngagementRates | None = DEMO_ENGAGEMENT
    #: Seeds the engagement draws: the same seed, the same clicks and orders.
    seed: int = 2026


class _Phases:
    """Wall time per phase of the walk (``with phases("dispatch"): ...``), for the report and bench/."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name = ""
        self._started = 0.0

    def __call__(self, name: str) -> _Phases:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        spent = time.perf_counter() - self._started
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + spent


def simulation_settings(
    settings: Settings, outbox_dir: Path, database_file: Path, *, concurrency: int = 1
) -> Settings:
    """The live settings with file-outbox channels and the copied database.

    A simulation never reaches a provider.
    """
    return settings.model_copy(
        update={
            "email_channel": EmailChannelKind.outbox,
            "social_channel": SocialChannelKind.outbox,
            "outbox_dir": outbox_dir,
            "database_url": f"sqlite:///{database_file}",
            "concurrency": concurrency,
        }
    )


def _next_moment(engine: Engine, now: datetime, event_types: set[str]) -> datetime | None:
    """The earliest future moment at which the store has something to do."""
    with engine.connect() as conn:
        candidates = [
            conn.execute(
                select(func.min(DELIVERY.c.scheduled_for)).where(
                    DELIVERY.c.state.in_(WAITING), DELIVERY.c.scheduled_for > now
                )
            ).scalar(),
            conn.execute(
                select(func.min(POST.c.scheduled_for)).where(
                    POST.c.state.in_(WAITING), POST.c.scheduled_for > now
                )
            ).scalar(),
            conn.execute(
                select(func.min(ENROLMENT.c.wake_at)).where(
                    ENROLMENT.c.state.in_(LIVE), ENROLMENT.c.wake_at > now
                )
            ).scalar(),
            conn.execute(
                select(func.min(AB_TEST.c.decide_at)).where(
                    AB_TEST.c.status == "testing", AB_TEST.c.decide_at > now
                )
            ).scalar(),
        ]
        if event_types:
            candidates.append(
                conn.execute(
                    select(func.min(EVENT.c.occurred_at)).where(
                        EVENT.c.processed_at.is_(None),
                        EVENT.c.occurred_at > now,
                        EVENT.c.type.in_(event_types),
                    )
                ).scalar()
            )
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


def simulate(
    settings: Settings,
    source: Engine,
    workspace: Workspace,
    options: SimulationOptions,
    *,
    progress: Callable[[datetime, datetime, datetime], None] | None = None,
) -> SeasonReport:
    """Run the season ``options.start``–``options.end`` (days in ``TIDINGS_TIMEZONE``) and report it."""
    wall_started = time.perf_counter()
    zone = settings.zone
    start = datetime.combine(options.start, datetime.min.time(), zone)
    end = datetime.combine(options.end + timedelta(days=1), datetime.min.time(), zone)
    database_file = options.database_file or options.work_dir / "simulation.db"
    engine = copy_store(source, database_file)
    sim_settings = simulation_settings(
        settings, options.outbox_dir, database_file, concurrency=options.concurrency
    )
    baseline = prepare_runtime(engine, start)
    options.outbox_dir.mkdir(parents=True, exist_ok=True)

    clock = FakeClock(start)
    queue: list[tuple[datetime, int, str, Occurrence]] = []
    for campaign in workspace.campaigns.values():
        for occurrence in due_occurrences(campaign, workspace.schedules, start, end, default_zone=zone):
            heapq.heappush(queue, (occurrence.fire_at, len(queue), campaign.key, occurrence))
    event_types = trigger_types(workspace)

    from engine.channels.outbox import OutboxEmailChannel, OutboxSocialChannel
    from engine.render.renderer import Renderer

    # The simulation's outbox is scratch output: no fsync per file (~12 s of the 5,000-contact season).
    dispatcher = Dispatcher(
        engine,
        sim_settings,
        clock,
        Renderer(sim_settings, workspace.templates_dir),
        OutboxEmailChannel.from_settings(sim_settings, now=clock.now, durable=False),
        OutboxSocialChannel.from_settings(sim_settings, now=clock.now, durable=False),
        workspace,
    )
    engagement = (
        EngagementModel(engine, options.engagement, seed=options.seed, since=start)
        if options.engagement is not None
        else None
    )
    fired = 0
    stops = 0
    phases = _Phases()
    try:
        while True:
            now = clock.now()
            stops += 1
            with phases("fire"):
                while queue and queue[0][0] <= now:
                    _, _, campaign_id, occurrence = heapq.heappop(queue)
                    fire(engine, workspace, campaign_id, occurrence, clock=clock, settings=sim_settings)
                    fired += 1
            with phases("events"):
                pump_due_events(engine, workspace, clock, sim_settings)
            with phases("flows"):
                flows.advance_due(engine, workspace, clock, sim_settings)
            with phases("tests"):
                decide_due_tests(engine, workspace, clock, sim_settings)
            with phases("dispatch"):
                stats = dispatcher.drain()
            if engagement is not None and stats.sent:
                with phases("engagement"):
                    engagement.after_dispatch(clock.now())
            if progress is not None:
                progress(start, now, end)
            with phases("walk"):
                moment = _next_moment(engine, now, event_types)
            candidates = [m for m in (moment,) if m is not None]
            if queue:
                candidates.append(queue[0][0])
            if stats.wait_seconds > 0:
                candidates.append(now + timedelta(seconds=stats.wait_seconds))
            if not candidates:
                break
            upcoming = max(min(candidates), now + timedelta(seconds=1))
            if upcoming >= end:
                break
            clock.set(upcoming)
    finally:
        dispatcher.close()
    report = build_report(
        engine,
        workspace,
        start=options.start,
        end=options.end,
        zone=zone,
        default_locale=settings.default_locale,
        fired=fired,
        elapsed=time.perf_counter() - wall_started,
        outbox_dir=options.outbox_dir,
        baseline=baseline,
        window_days=settings.conversion_window_days,
    )
    if engagement is not None:
        report.engagement = {**options.engagement.as_dict(), **engagement.stats.as_dict()}  # type: ignore[union-attr]
    report.stops = stops
    report.phase_seconds = dict(phases.seconds)
    engine.dispose()
    return report
