"""Coupon steps: unique codes, stored, and idempotent per contact and occurrence."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact

from engine.clock import FakeClock
from engine.runtime.coupons import issue_coupon
from engine.store.models import Coupon


def _issue(engine: Engine, clock: FakeClock, contact: int, occurrence: str = "o1") -> str:
    with engine.begin() as conn:
        issued = issue_coupon(
            conn,
            campaign_id="january",
            coupon_id="apology",
            contact_id=contact,
            occurrence=occurrence,
            percent=15,
            prefix="sorry",
            now=clock.now(),
            expires_in=timedelta(days=30),
        )
    assert issued.percent == Decimal("15") and issued.expires_at == clock.now() + timedelta(days=30)
    return issued.code


def test_each_contact_gets_its_own_code_with_the_prefix(store_engine: Engine, clock: FakeClock) -> None:
    codes = {
        _issue(store_engine, clock, add_contact(store_engine, f"c{i}@example.com", now=clock.now()))
        for i in range(30)
    }
    assert len(codes) == 30
    assert all(re.fullmatch(r"SORRY-[A-HJ-NP-Z2-9]{6}", code) for code in codes)


def test_issuing_again_returns_the_same_code(store_engine: Engine, clock: FakeClock) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    first = _issue(store_engine, clock, contact)
    assert _issue(store_engine, clock, contact) == first
    assert _issue(store_engine, clock, contact, occurrence="o2") != first
    with store_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Coupon)).scalar_one() == 2
