"""When a campaign sends next: the earliest moment some contact it would reach is due.

"Next fires" used to be the APScheduler job's next run time: for a per-contact campaign that is the
earliest cutoff anywhere on the earliest zone on Earth ("from 2026-12-14 09:00 local" for a
Romania-only campaign that sends 12-15 09:00 EET). Here it comes from the campaign's own audience,
through the planner's cells (:func:`engine.runtime.planner.draft_plan`): the first instant of a cell
that holds contacts, in that cell's zone, and how many contacts the occurrence reaches.

An occurrence that has fired already (its rows wait in the outbox, or its enrolments in a flow)
is read from the store instead: the earliest pending row, in the zone its facts name. One that was
fired ahead of its time (``tidings trigger --now``) and is done shows as ``sent``, never again as
upcoming.

The daemon's banner, the preview's index, ``plan`` and the season report all show these figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from engine.runtime.facts import MessageFacts
from engine.runtime.occurrences import campaign_zone, due_occurrences
from engine.runtime.planner import count_cell, draft_plan
from engine.settings import Settings
from engine.store.models import Delivery, DeliveryState, Enrolment, EnrolmentState, Post
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]
ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
HORIZON = timedelta(days=400)
WAITING = (DeliveryState.pending.value, DeliveryState.retry.value)


@dataclass(frozen=True)
class NextSend:
    """The first moment a campaign's occurrence is due for some contact, and in which zone."""

    campaign_id: str
    occurrence: str
    at: datetime
    zone: ZoneInfo
    reach: int
    planned: bool  # True: its rows are in the outbox already (the occurrence has fired)
    state: str = "upcoming"  # upcoming | in progress (fired, messages waiting) | sent (fired and done)
    posts: bool = False  # a broadcast: ``reach`` counts posts, not contacts

    @property
    def local(self) -> datetime:
        return self.at.astimezone(self.zone)

    def label(self) -> str:
        """``2026-12-15 09:00 EET (Europe/Bucharest)``."""
        local = self.local
        return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({self.zone.key})"

    def who(self) -> str:
        """``2,366 contacts``, or for a broadcast ``a post`` (``2 posts``)."""
        if self.posts:
            return "a post" if self.reach == 1 else f"{self.reach:,} posts"
        return f"{self.reach:,} {'contact' if self.reach == 1 else 'contacts'}"

    def describe(self) -> str:
        """One line for the banner and the preview: when, to how many, and whether it already went."""
        if self.state == "sent":
            return f"{self.occurrence} sent ahead of time ({self.reach:,} sent)"
        who = self.who()
        if self.state == "in progress":
            return f"{self.occurrence} in progress: {who} waiting, next {self.label()}"
        return f"{self.label()} · {who}"

    def as_dict(self) -> dict[str, object]:
        return {
            "campaign": self.campaign_id,
            "occurrence": self.occurrence,
            "at": self.at.isoformat(),
            "local": self.local.isoformat(),
            "zone": self.zone.key,
            "reach": self.reach,
            "posts": self.posts,
            "planned": self.planned,
            "state": self.state,
        }


def _planned(conn: Connection, campaign: Campaign, settings: Settings, now: datetime) -> list[NextSend]:
    """Occurrences already fired whose messages still wait: the earliest waiting row of each."""
    found: list[NextSend] = []
    for table in (DELIVERY, POST):
        waiting = (
            select(table.c.occurrence, func.min(table.c.scheduled_for), func.count())
            .where(table.c.campaign_id == campaign.key, table.c.state.in_(WAITING))
            .group_by(table.c.occurrence)
        )
        for occurrence, first, count in conn.execute(waiting):
            context = conn.execute(
                select(table.c.context)
                .where(
                    table.c.campaign_id == campaign.key,
                    table.c.occurrence == occurrence,
                    table.c.state.in_(WAITING),
                    table.c.scheduled_for == first,
                )
                .limit(1)
            ).scalar()
            zone = MessageFacts.from_json(context).zone_info or campaign_zone(campaign, settings.zone)
            found.append(
                NextSend(campaign.key, occurrence, max(first, now), zone, int(count), True, "in progress")
            )
    live = (EnrolmentState.active.value, EnrolmentState.waiting.value)
    flows = (
        select(ENROLMENT.c.occurrence, func.min(ENROLMENT.c.wake_at), func.count())
        .where(
            ENROLMENT.c.campaign_id == campaign.key,
            ENROLMENT.c.state.in_(live),
            ENROLMENT.c.wake_at.is_not(None),
        )
        .group_by(ENROLMENT.c.occurrence)
    )
    for occurrence, first, count in conn.execute(flows):
        context = conn.execute(
            select(ENROLMENT.c.context)
            .where(
                ENROLMENT.c.campaign_id == campaign.key,
                ENROLMENT.c.occurrence == occurrence,
                ENROLMENT.c.wake_at == first,
            )
            .limit(1)
        ).scalar()
        zone = MessageFacts.from_json(context).zone_info or campaign_zone(campaign, settings.zone)
        found.append(
            NextSend(campaign.key, occurrence, max(first, now), zone, int(count), True, "in progress")
        )
    return found


def _done(conn: Connection, campaign: Campaign, occurrence: str) -> int:
    """How many messages of an occurrence went out already (it was fired ahead of its time)."""
    return sum(
        int(
            conn.execute(
                select(func.count()).where(
                    table.c.campaign_id == campaign.key,
                    table.c.occurrence == occurrence,
                    table.c.state == DeliveryState.sent.value,
                )
            ).scalar_one()
        )
        for table in (DELIVERY, POST)
    )


def next_sends(
    conn: Connection,
    workspace: Workspace,
    campaign: Campaign,
    *,
    settings: Settings,
    now: datetime,
    limit: int = 1,
) -> list[NextSend]:
    """The campaign's next sends, earliest first: fired occurrences still waiting, then upcoming ones.

    An upcoming occurrence whose audience is empty (nobody it would reach) is passed over. Event
    triggers have none (they send when events come).
    """
    if campaign.trigger.event is not None:
        return []
    found = _planned(conn, campaign, settings, now)
    fired = {send.occurrence for send in found}
    for occurrence in due_occurrences(
        campaign, workspace.schedules, now, now + HORIZON, default_zone=settings.zone, include_inactive=True
    ):
        if len(found) >= limit + len(fired):
            break
        if occurrence.key in fired:
            continue
        done = _done(conn, campaign, occurrence.key)
        if done:
            zone = campaign_zone(campaign, settings.zone)
            found.append(NextSend(campaign.key, occurrence.key, occurrence.fire_at, zone, done, True, "sent"))
            continue
        draft = draft_plan(conn, workspace, campaign, occurrence, settings=settings, now=now)
        if draft.skipped:
            continue
        cells = [cell for cell in draft.cells if cell.excluded is None and cell.instant is not None]
        if draft.mode == "posts":  # a broadcast has no audience: one post per step
            reached = [(cell, 1) for cell in cells]
        else:
            reached = [(cell, count) for cell in cells if (count := count_cell(conn, draft, cell))]
        if not reached:
            continue
        first, _ = min(reached, key=lambda item: item[0].instant or now)
        assert first.instant is not None
        zone = first.facts.zone_info or campaign_zone(campaign, settings.zone)
        reach = sum(count for _, count in reached)
        found.append(
            NextSend(
                campaign.key, occurrence.key, first.instant, zone, reach, False, posts=draft.mode == "posts"
            )
        )
    found.sort(key=lambda send: send.at)
    return found[:limit]


__all__ = ["NextSend", "next_sends"]
