"""Helpers shared by the planner and plan tests: campaigns from YAML-shaped dicts, contacts, a workspace."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from engine.settings import Settings
from engine.store.models import Consent, Contact, ShopOrder
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign
from engine.workspace.schedules import ScheduleFile, Schedules
from engine.workspace.segments import Segment

GRANTED = datetime(2026, 1, 1, tzinfo=UTC)


def workspace(
    *campaigns: Campaign, segments: dict[str, Segment] | None = None, schedules: Schedules | None = None
) -> Workspace:
    """A real workspace holding these campaigns (its root is never read: templates are not rendered)."""
    return Workspace(
        root=Path("."),
        campaigns={c.key: c for c in campaigns},
        segments=dict(segments or {}),
        schedules=schedules or Schedules(),
    )


def campaign(campaign_id: str, **spec: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": campaign_id,
        "name": campaign_id.replace("-", " ").title(),
        "status": "active",
        "audience": {"where": [{"consent": "email"}]},
        "steps": [{"id": "hello", "send": {"channel": "email", "template": "hello"}}],
    }
    data.update(spec)
    return Campaign.model_validate(data)


def schedules(document: dict[str, Any]) -> Schedules:
    parsed = ScheduleFile.model_validate(document)
    return Schedules(dates=dict(parsed.dates), ranges=dict(parsed.ranges), shipping=parsed.shipping_cutoffs)


def settings(tmp_path: Any, **overrides: Any) -> Settings:
    return Settings(workspace=tmp_path, timezone=overrides.pop("timezone", "UTC"), **overrides)


def add_contacts(engine: Engine, rows: list[dict[str, Any]], *, consent: bool = True) -> None:
    defaults = {"tags": [], "attributes": {}, "orders_count": 0, "total_spent": Decimal("0.00")}
    with engine.begin() as conn:
        conn.execute(insert(Contact.__table__), [{**defaults, **row} for row in rows])  # type: ignore[attr-defined]
        if consent:
            conn.execute(
                insert(Consent.__table__),  # type: ignore[attr-defined]
                [{"contact_id": row["id"], "channel": "email", "granted_at": GRANTED} for row in rows],
            )


def add_orders(engine: Engine, rows: list[dict[str, Any]]) -> None:
    defaults = {"total": Decimal("20.00"), "items": [], "is_gift": False, "status": "placed"}
    with engine.begin() as conn:
        conn.execute(insert(ShopOrder.__table__), [{**defaults, **row} for row in rows])  # type: ignore[attr-defined]
