"""A private copy of the store for a simulation, so a what-if never touches the real outbox.

SQLite is copied with SQLite's own online backup (consistent even while a daemon writes);
any other database is copied table by table into a SQLite file, which keeps the
simulator free of server-side setup. The copy starts the season with a clean runtime:
no deliveries, enrolments, posts, coupons or scheduler jobs, and every shop event from
the start of the simulated span unprocessed, so the season plays out as it would live.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url

from engine.store import make_engine, upgrade
from engine.store.models import (
    ALL_TABLES,
    Coupon,
    Delivery,
    DeliveryEvent,
    Enrolment,
    Post,
    ShopEvent,
)

RUNTIME_TABLES = [DeliveryEvent, Delivery, Post, Coupon, Enrolment]
CHUNK = 5_000


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


def reset_runtime(engine: Engine, start: datetime) -> None:
    """Clear what a previous run planned and replay events from ``start`` on."""
    with engine.begin() as conn:
        for model in RUNTIME_TABLES:
            conn.execute(delete(model.__table__))  # type: ignore[attr-defined]
        if inspect(conn).has_table("apscheduler_jobs"):
            conn.execute(text("DELETE FROM apscheduler_jobs"))
        events = ShopEvent.__table__  # type: ignore[attr-defined]
        conn.execute(update(events).where(events.c.occurred_at >= start).values(processed_at=None))
