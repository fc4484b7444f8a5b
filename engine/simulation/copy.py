"""A private copy of the store for a simulation, so a what-if never touches the real outbox.

SQLite is copied with SQLite's own online backup (consistent even while a daemon writes);
any other database is copied table by table into a SQLite file, which keeps the
simulator free of server-side setup.

The copy keeps the store's current state: what was already sent counts as sent (a campaign
id reused next season sends again only because its keys name the season), what waits in the
outbox is sent when due, and every shop event from the start of the simulated span is replayed
(enrolment is idempotent, so an event the daemon already handled enrols nobody twice).
:class:`Baseline` remembers which rows existed, so the season report counts only what this
simulation did.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Table, func, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url

from engine.store import make_engine, upgrade
from engine.store.models import ALL_TABLES, Delivery, DeliveryState, Post, ShopEvent

CHUNK = 5_000
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
POST: Table = Post.__table__  # type: ignore[attr-defined]
OPEN = (DeliveryState.pending.value, DeliveryState.retry.value, DeliveryState.claimed.value)


def copy_store(source: Engine, target_file: Path) -> Engine:
    """Copy ``source`` into a fresh SQLite file and return an engine on it (schema at head)."""
    target_file.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target_file}{suffix}").unlink(missing_ok=True)
    url = make_url(source.url.render_as_string(hide_password=False))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        with sqlite3.connect(url.database) as src, sqlite3.connect(target_file) as dst:
            src.backup(dst)
        target = make_engine(f"sqlite:///{target_file}")
        upgrade(target)
        return target
    target = make_engine(f"sqlite:///{target_file}")
    upgrade(target)
    with source.connect() as src, target.begin() as dst:
        for model in ALL_TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            result = src.execution_options(stream_results=True).execute(select(table))
            while chunk := result.mappings().fetchmany(CHUNK):
                dst.execute(table.insert(), [dict(row) for row in chunk])
    return target


@dataclass(frozen=True)
class Baseline:
    """The outbox as the simulation found it: rows after the last id are new; of the older ones only
    those still open (pending, retry, claimed) can change during the simulation."""

    last_delivery: int
    last_post: int
    open_deliveries: frozenset[int]
    open_posts: frozenset[int]

    @classmethod
    def take(cls, engine: Engine) -> Baseline:
        with engine.connect() as conn:
            last = [
                int(conn.execute(select(func.coalesce(func.max(t.c.id), 0))).scalar_one())
                for t in (DELIVERY, POST)
            ]
            opened = [
                frozenset(conn.execute(select(t.c.id).where(t.c.state.in_(OPEN))).scalars())
                for t in (DELIVERY, POST)
            ]
        return cls(last[0], last[1], opened[0], opened[1])

    def counts_delivery(self, row_id: int) -> bool:
        return row_id > self.last_delivery or row_id in self.open_deliveries

    def counts_post(self, row_id: int) -> bool:
        return row_id > self.last_post or row_id in self.open_posts


def prepare_runtime(engine: Engine, start: datetime) -> Baseline:
    """Replay shop events from ``start`` on (scheduler jobs belong to the live daemon, not the copy)
    and remember the outbox as it is."""
    with engine.begin() as conn:
        if inspect(conn).has_table("apscheduler_jobs"):
            conn.execute(text("DELETE FROM apscheduler_jobs"))
        events = ShopEvent.__table__  # type: ignore[attr-defined]
        conn.execute(update(events).where(events.c.occurred_at >= start).values(processed_at=None))
    return Baseline.take(engine)
