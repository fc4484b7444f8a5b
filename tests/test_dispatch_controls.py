"""Pause, resume and cancel: operator overrides that never lose or re-send a message."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, delivery_rows

from engine.clock import FakeClock
from engine.runtime.controls import cancel, control_of, pause, resume


def test_pause_then_resume_records_the_control(store_engine: Engine, clock: FakeClock) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    add_delivery(store_engine, contact, now=clock.now())
    paused = pause(store_engine, "holiday", clock)
    assert (paused.previous, paused.control, paused.pending) == ("active", "paused", 1)
    with store_engine.connect() as conn:
        assert control_of(conn, "holiday") == "paused"
    resumed = resume(store_engine, "holiday", clock)
    assert (resumed.previous, resumed.control) == ("paused", "active")


def test_cancel_skips_open_rows_but_keeps_sent_ones(store_engine: Engine, clock: FakeClock) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    pending = add_delivery(store_engine, contact, now=now, step="a")
    sent = add_delivery(store_engine, contact, now=now, step="b", state="sent", sent_at=now)
    other = add_delivery(store_engine, contact, now=now, step="c", campaign="other")
    result = cancel(store_engine, "holiday", clock)
    assert result.skipped_deliveries == 1
    rows = delivery_rows(store_engine)
    assert (rows[pending].state, rows[pending].reason) == ("skipped", "cancelled")
    assert rows[sent].state == "sent" and rows[other].state == "pending"
