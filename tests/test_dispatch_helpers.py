"""Small builders for runtime tests: real rows in a real store (no tests in this module)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from engine.store.models import Consent, Contact, Delivery, Post, Suppression


def add_contact(
    engine: Engine,
    email: str,
    *,
    now: datetime,
    timezone: str | None = "Europe/Tallinn",
    consent: tuple[str, ...] = ("email",),
    **fields: Any,
) -> int:
    with engine.begin() as conn:
        values = {
            "email": email.lower(),
            "timezone": timezone,
            "tags": [],
            "attributes": {},
            "total_spent": Decimal("0"),
            "created_at": now,
        }
        values.update(fields)
        contact_id = int(conn.execute(insert(Contact).values(**values).returning(Contact.id)).scalar_one())
        for channel in consent:
            conn.execute(
                insert(Consent).values(contact_id=contact_id, channel=channel, granted_at=now, source="test")
            )
    return contact_id


def add_suppression(engine: Engine, email: str, reason: str, *, now: datetime, channel: str = "all") -> None:
    with engine.begin() as conn:
        conn.execute(insert(Suppression).values(email=email, channel=channel, reason=reason, created_at=now))


def add_delivery(
    engine: Engine,
    contact_id: int | None,
    *,
    now: datetime,
    campaign: str = "holiday",
    step: str = "main",
    occurrence: str = "2026-12-01",
    scheduled_for: datetime | None = None,
    category: str = "marketing",
    template: str = "greeting",
    **fields: Any,
) -> int:
    values = {
        "idempotency_key": f"{campaign}:{step}:{contact_id}:{occurrence}",
        "campaign_id": campaign,
        "step_id": step,
        "contact_id": contact_id,
        "channel": "email",
        "category": category,
        "template": template,
        "occurrence": occurrence,
        "scheduled_for": scheduled_for or now,
        "created_at": now,
        "context": {},
    }
    values.update(fields)
    with engine.begin() as conn:
        return int(conn.execute(insert(Delivery).values(**values).returning(Delivery.id)).scalar_one())


def add_post(
    engine: Engine, *, now: datetime, campaign: str = "countdown", occurrence: str = "2026-12-01"
) -> int:
    values = {
        "idempotency_key": f"{campaign}:post:{occurrence}",
        "campaign_id": campaign,
        "step_id": "post",
        "channel": "x",
        "template": "countdown",
        "occurrence": occurrence,
        "scheduled_for": now,
        "created_at": now,
    }
    with engine.begin() as conn:
        return int(conn.execute(insert(Post).values(**values).returning(Post.id)).scalar_one())


def delivery_rows(engine: Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        return {row.id: row for row in conn.execute(select(Delivery.__table__))}  # type: ignore[attr-defined]
