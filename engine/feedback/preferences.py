"""Preferences short of leaving: topics a contact left, and a pause ("snooze") through a day.

Many people who click "unsubscribe" in December mean "not so much, not now". The preferences
page (``GET /u/{token}``) therefore offers, beside the full unsubscribe:

* **topics** — marketing campaigns may declare ``topic: NAME`` (offers, reminders, tips…); a
  contact who leaves a topic is kept out of that topic's campaigns only (``topic_opt_out`` rows;
  the policy gate skips them as ``topic_opt_out:NAME``) and may come back to it on the same page;
* **a pause** — no marketing through a chosen day, e.g. "through 6 January" (``snooze``: the day,
  and the first instant after it in the contact's zone; the gate skips them as ``snoozed``).

Neither touches consent or suppressions: the contact stays subscribed, and both end without
anyone having to do anything. Transactional mail (their orders, their gift card) is never
affected. RFC 8058's one-click POST stays a full unsubscribe (:mod:`engine.feedback.unsubscribe`).

The pause offered: through 6 January when that is at most 60 days away (the end of the
holidays: Epiphany), and for two weeks, a month or three months; any day after today and at
most a year ahead is accepted (:data:`MAX_PAUSE_DAYS`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Connection, Engine

from engine.runtime.local_time import local_instant
from engine.runtime.zones import resolve_zone
from engine.store.database import write_transaction
from engine.store.dialect import insert_for
from engine.store.models import Contact, Snooze, TopicOptOut
from engine.tokens import UnsubscribeClaim
from engine.workspace.loader import Workspace

TOPICS: Table = TopicOptOut.__table__  # type: ignore[attr-defined]
SNOOZE: Table = Snooze.__table__  # type: ignore[attr-defined]
CONTACT: Table = Contact.__table__  # type: ignore[attr-defined]

MAX_PAUSE_DAYS = 366
HOLIDAYS_END = (1, 6)  # 6 January: Epiphany, when the holidays end in much of Europe
HOLIDAYS_OFFER_WITHIN = 60
PAUSE_LENGTHS = (14, 30, 91)


class InvalidPreference(ValueError):
    """A preferences form asked for something the page does not offer (a topic, a day)."""


@dataclass(frozen=True, slots=True)
class Preferences:
    """A contact's topics left and pause (``through`` is None when not paused)."""

    left_topics: frozenset[str] = frozenset()
    through: date | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def paused_at(self, now: datetime) -> bool:
        return self.through is not None and now.astimezone(self.zone).date() <= self.through


@dataclass(frozen=True, slots=True)
class PreferenceChange:
    left: tuple[str, ...] = ()
    rejoined: tuple[str, ...] = ()
    paused_through: date | None = None
    pause_ended: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.left or self.rejoined or self.paused_through or self.pause_ended)


def workspace_topics(workspace: Workspace) -> list[str]:
    """The topics a contact may leave: those of the workspace's marketing campaigns."""
    return sorted(
        {
            campaign.topic
            for campaign in workspace.campaigns.values()
            if campaign.topic is not None and campaign.category.value == "marketing"
        }
    )


def contact_zone(conn: Connection, contact_id: int, default: ZoneInfo) -> ZoneInfo | None:
    """The contact's zone as messages use it; None for a contact that no longer exists."""
    row = conn.execute(
        select(CONTACT.c.timezone, CONTACT.c.country).where(CONTACT.c.id == contact_id)
    ).first()
    if row is None:
        return None
    return resolve_zone(row.timezone, row.country, cutoff_zone=None, default=default).zone


def read_preferences(conn: Connection, contact_id: int, default: ZoneInfo) -> Preferences:
    zone = contact_zone(conn, contact_id, default) or default
    left = frozenset(conn.execute(select(TOPICS.c.topic).where(TOPICS.c.contact_id == contact_id)).scalars())
    through = conn.execute(select(SNOOZE.c.through).where(SNOOZE.c.contact_id == contact_id)).scalar()
    return Preferences(left, through, zone)


def pause_options(today: date) -> list[date]:
    """The days the page offers to pause through (see the module docstring), soonest first."""
    year = today.year if (today.month, today.day) < HOLIDAYS_END else today.year + 1
    options = {today + timedelta(days=days) for days in PAUSE_LENGTHS}
    holidays_end = date(year, *HOLIDAYS_END)
    if (holidays_end - today).days <= HOLIDAYS_OFFER_WITHIN:
        options.add(holidays_end)
    return sorted(options)


def check_pause(through: date, today: date) -> date:
    if through <= today:
        raise InvalidPreference(f"choose a day after today to pause through, not {through.isoformat()}")
    if (through - today).days > MAX_PAUSE_DAYS:
        raise InvalidPreference(f"a pause lasts at most {MAX_PAUSE_DAYS} days")
    return through


def apply_preferences(
    engine: Engine,
    claim: UnsubscribeClaim,
    *,
    now: datetime,
    default_zone: ZoneInfo,
    known_topics: Collection[str],
    shown_topics: Iterable[str],
    leave: Iterable[str],
    pause: date | None | Literal["keep"] = "keep",
    source: str = "preferences page",
) -> PreferenceChange:
    """Make the contact's topics and pause what the form says.

    ``shown_topics`` are the topics the form showed: of those, ``leave`` are left and the rest
    (re)joined. ``pause`` is the day to pause through, None for no pause, or ``"keep"`` to leave
    it as it is (a form without the pause choice). Idempotent.
    """
    shown = set(shown_topics)
    leaving = set(leave)
    unknown = sorted((shown | leaving) - set(known_topics))
    if unknown:
        raise InvalidPreference(f"unknown topic {unknown[0]!r}")
    evidence = f"{source}:{claim.campaign_id}" if claim.campaign_id else source
    with write_transaction(engine) as conn:
        zone = contact_zone(conn, claim.contact_id, default_zone)
        if zone is None:
            return PreferenceChange()
        today = now.astimezone(zone).date()
        before = read_preferences(conn, claim.contact_id, default_zone)
        current = before.through if before.paused_at(now) else None
        if pause == "keep":
            pause = current
        if pause is not None and pause != current:
            check_pause(pause, today)
        left = sorted(leaving - before.left_topics)
        rejoined = sorted((shown - leaving) & before.left_topics)
        if left:
            conn.execute(
                insert_for(conn, TOPICS)
                .values(
                    [
                        {
                            "contact_id": claim.contact_id,
                            "topic": topic,
                            "created_at": now,
                            "source": evidence,
                        }
                        for topic in left
                    ]
                )
                .on_conflict_do_nothing(index_elements=["contact_id", "topic"])
            )
        if rejoined:
            conn.execute(
                delete(TOPICS).where(TOPICS.c.contact_id == claim.contact_id, TOPICS.c.topic.in_(rejoined))
            )
        paused_through: date | None = None
        ended = False
        if pause is not None and pause != current:
            until = local_instant(pause + timedelta(days=1), time(0), zone)
            values = {"through": pause, "until": until, "created_at": now, "source": evidence}
            conn.execute(
                insert_for(conn, SNOOZE)
                .values(contact_id=claim.contact_id, **values)
                .on_conflict_do_update(index_elements=["contact_id"], set_=values)
            )
            paused_through = pause
        elif pause is None and before.through is not None:
            conn.execute(delete(SNOOZE).where(SNOOZE.c.contact_id == claim.contact_id))
            ended = current is not None
    return PreferenceChange(tuple(left), tuple(rejoined), paused_through, ended)


__all__ = [
    "InvalidPreference",
    "PreferenceChange",
    "Preferences",
    "apply_preferences",
    "check_pause",
    "pause_options",
    "read_preferences",
    "workspace_topics",
]
