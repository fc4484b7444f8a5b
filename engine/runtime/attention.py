"""What needs an operator now: suspended channels and campaigns the circuit breaker paused.

One query set, shown the same way by ``/healthz`` (status ``degraded``, with which and why),
``/metrics`` (gauges), ``tidings stats`` and the preview's index. Nothing here decides anything:
the dispatcher suspends channels (:mod:`engine.runtime.channel_state`) and the breaker pauses
campaigns (:mod:`engine.runtime.breaker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from engine.runtime.breaker import NOTE_PREFIX
from engine.runtime.channel_state import Suspension, suspensions
from engine.store.models import CampaignControl, CampaignState

CAMPAIGN_STATE: Table = CampaignState.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Attention:
    channels: dict[str, Suspension]
    breaker_paused: dict[str, str]  # campaign id → the breaker's reason

    @property
    def problems(self) -> list[str]:
        found = [suspension.describe() for suspension in self.channels.values()]
        found += [
            f"campaign {cid} paused by the circuit breaker: {why}"
            for cid, why in sorted(self.breaker_paused.items())
        ]
        return found

    def __bool__(self) -> bool:
        return bool(self.channels or self.breaker_paused)


def attention(conn: Connection, now: datetime) -> Attention:
    paused = {
        row.campaign_id: str(row.note).removeprefix(NOTE_PREFIX)
        for row in conn.execute(
            select(CAMPAIGN_STATE.c.campaign_id, CAMPAIGN_STATE.c.note).where(
                CAMPAIGN_STATE.c.control == CampaignControl.paused.value,
                CAMPAIGN_STATE.c.note.like(NOTE_PREFIX + "%"),
            )
        )
    }
    return Attention(suspensions(conn, now), paused)


__all__ = ["Attention", "attention"]
