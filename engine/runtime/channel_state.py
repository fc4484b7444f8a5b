"""A channel paused as a whole: one named reason instead of every message failing in turn.

When a provider answers in a way every message would get — a revoked SendGrid key (401/403), X
credits exhausted (402), bad X credentials, SMTP refusing to authenticate — the channel raises
:class:`~engine.channels.base.ChannelSuspended`; X's spent daily cap (a 429 whose reset is the
24-hour one) is account-wide too. The dispatcher then records the suspension here and claims
nothing more for that channel: the message that met it goes back to ``pending`` untouched (it was
not refused), and so does every other one. A suspension with an end (a daily cap's reset) lifts by
itself; one without (a key to replace, credits to buy) lasts until ``tidings resume --channel``.

``tidings stats``, ``/healthz`` (degraded), ``/metrics`` and the daemon's log show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Connection

from engine.store.dialect import insert_for
from engine.store.models import ChannelState

CHANNEL_STATE: Table = ChannelState.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Suspension:
    channel: str
    reason: str
    since: datetime
    until: datetime | None  # None: until an operator resumes the channel

    def describe(self) -> str:
        end = f" until {self.until:%Y-%m-%d %H:%M} UTC" if self.until else " until resumed"
        return f"{self.channel} suspended{end}: {self.reason}"


def suspend(conn: Connection, channel: str, reason: str, *, now: datetime, until: datetime | None) -> None:
    """Suspend ``channel`` (a later suspension replaces an earlier one: the newest reason counts)."""
    values = {"reason": reason[:500], "suspended_at": now, "suspended_until": until}
    statement = insert_for(conn, CHANNEL_STATE).values(channel=channel, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["channel"], set_=values))


def resume(conn: Connection, channel: str) -> bool:
    """Lift a suspension; True when there was one."""
    return bool(conn.execute(delete(CHANNEL_STATE).where(CHANNEL_STATE.c.channel == channel)).rowcount)


def suspensions(conn: Connection, now: datetime) -> dict[str, Suspension]:
    """The channels suspended at ``now`` (one whose end has passed is no longer suspended)."""
    return {
        row.channel: Suspension(row.channel, row.reason, row.suspended_at, row.suspended_until)
        for row in conn.execute(select(CHANNEL_STATE))
        if row.suspended_until is None or row.suspended_until > now
    }


__all__ = ["Suspension", "resume", "suspend", "suspensions"]
