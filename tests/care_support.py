"""The shipped workspace over a real store for the care tests: shop events in, the outbox out (no tests).

Events go in the way a shop sends them (validated and ingested as ``POST /events`` does, then
enrolled by the daemon's event pump); messages come out of the real dispatcher into the file
outbox, as ``.eml`` files read back with the standard library.
"""

from __future__ import annotations

import email
import email.policy
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage as ParsedEmail
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from engine.channels.outbox import OutboxEmailChannel
from engine.clock import FakeClock
from engine.feedback.shop_events import ingest_events, validate_events
from engine.render.renderer import Renderer
from engine.runtime import flows
from engine.runtime.dispatcher import Dispatcher
from engine.runtime.event_pump import pump_due_events
from engine.runtime.keys import delivery_key, new_message_token
from engine.settings import Settings
from engine.store.models import Consent, Contact, Delivery, Enrolment, ShopOrder
from engine.web.public import create_public_app
from engine.workspace.loader import Workspace, load_workspace

REPO = Path(__file__).resolve().parent.parent
SECRET = "c" * 40
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]

_SHIPPED: Workspace | None = None


def shipped_workspace() -> Workspace:
    """The repository's own workspace (loaded once per test session: it does not change)."""
    global _SHIPPED
    if _SHIPPED is None:
        result = load_workspace(REPO, default_timezone="Europe/Tallinn")
        assert result.ok, [str(problem) for problem in result.errors]
        _SHIPPED = result.workspace
    return _SHIPPED


def care_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": tmp_path,
        "secret_key": SECRET,
        "timezone": "Europe/Tallinn",
        "outbox_dir": tmp_path / "outbox",
        "concurrency": 1,
        "email_rate_per_second": 100_000,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def customer(
    engine: Engine,
    email_address: str,
    *,
    locale: str = "en",
    country: str = "EE",
    timezone: str | None = "Europe/Tallinn",
    consent: bool = True,
    orders_count: int = 1,
    order: str | None = None,
    now: datetime,
) -> int:
    """A contact as the shop knows them (with marketing consent unless told otherwise; with the
    delivered order ``order`` when given)."""
    with engine.begin() as conn:
        contact_id = int(
            conn.execute(
                insert(CONTACT).returning(CONTACT.c.id),
                {
                    "email": email_address,
                    "first_name": email_address.split("@")[0].title(),
                    "locale": locale,
                    "country": country,
                    "timezone": timezone,
                    "tags": [],
                    "attributes": {},
                    "orders_count": orders_count,
                    "total_spent": 100,
                    "created_at": now,
                },
            ).scalar_one()
        )
        if consent:
            conn.execute(
                insert(Consent.__table__),  # type: ignore[attr-defined]
                {"contact_id": contact_id, "channel": "email", "granted_at": now, "source": "checkout"},
            )
        if order is not None:
            conn.execute(
                insert(ShopOrder.__table__),  # type: ignore[attr-defined]
                {
                    "external_id": order,
                    "contact_id": contact_id,
                    "status": "delivered",
                    "placed_at": now - timedelta(days=10),
                    "delivered_at": now - timedelta(days=6),
                    "shipping_country": country,
                    "shipping_method": "standard",
                    "total": Decimal("84.00"),
                    "currency": "EUR",
                    "is_gift": True,
                    "items": [{"name": "Wool mittens", "quantity": 1}],
                },
            )
    return contact_id


def shop_event(
    kind: str, event_id: str, at: datetime, contact: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    return {"id": event_id, "type": kind, "occurred_at": at.isoformat(), "contact": contact, "data": data}


def post_events(engine: Engine, events: list[dict[str, Any]], *, now: datetime) -> None:
    """Store events as ``POST /events`` does (validated, contacts and cards upserted)."""
    ingest_events(engine, validate_events(events), now=now)


@dataclass
class Shop:
    """The shipped workspace running on a fake clock over one store: what the daemon's tick does."""

    engine: Engine
    settings: Settings
    clock: FakeClock
    workspace: Workspace
    dispatcher: Dispatcher

    def tick(self) -> None:
        pump_due_events(self.engine, self.workspace, self.clock, self.settings)
        flows.advance_due(self.engine, self.workspace, self.clock, self.settings)
        self.dispatcher.drain()

    def at(self, moment: datetime) -> None:
        self.clock.set(moment)
        self.tick()

    def deliveries(self, **where: Any) -> list[Any]:
        query = select(DELIVERY).order_by(DELIVERY.c.id)
        for name, value in where.items():
            query = query.where(DELIVERY.c[name] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def enrolments(self, campaign_id: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(ENROLMENT).where(ENROLMENT.c.campaign_id == campaign_id).order_by(ENROLMENT.c.id)
                )
            )

    def close(self) -> None:
        self.dispatcher.close()


def planned_for(
    shop: Shop,
    contact_id: int,
    campaign: str,
    template: str,
    category: str = "marketing",
    occurrence: str = "test",
) -> int:
    """An outbox row due now, as the planner writes one for a one-send campaign."""
    with shop.engine.begin() as conn:
        return int(
            conn.execute(
                insert(DELIVERY).returning(DELIVERY.c.id),
                {
                    "idempotency_key": delivery_key(campaign, "main", contact_id, occurrence),
                    "campaign_id": campaign,
                    "step_id": "main",
                    "contact_id": contact_id,
                    "channel": "email",
                    "category": category,
                    "template": template,
                    "locale": "en",
                    "occurrence": occurrence,
                    "scheduled_for": shop.clock.now(),
                    "state": "pending",
                    "attempts": 0,
                    "created_at": shop.clock.now(),
                    "context": {},
                    "message_token": new_message_token(),
                },
            ).scalar_one()
        )


def open_shop(engine: Engine, tmp_path: Path, clock: FakeClock, **overrides: Any) -> Shop:
    settings = care_settings(tmp_path, **overrides)
    workspace = shipped_workspace()
    dispatcher = Dispatcher(
        engine,
        settings,
        clock,
        Renderer(settings, workspace.templates_dir),
        OutboxEmailChannel.from_settings(settings, now=clock.now, durable=False),
        None,
        workspace,
        worker_id="care-test",
        rng=random.Random(14),
    )
    return Shop(engine, settings, clock, workspace, dispatcher)


@contextmanager
def public_client(shop: Shop) -> Iterator[TestClient]:
    """The public app over the shop's store, clock and the shipped workspace."""
    app = create_public_app(shop.settings, shop.engine, shop.clock, workspace=shipped_workspace)
    with TestClient(app) as client:
        yield client


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    date: datetime
    campaign: str
    text: str
    html: str
    headers: ParsedEmail


def outbox(settings: Settings) -> list[Mail]:
    """Every email the file outbox holds, oldest file name first."""
    found = []
    for path in sorted((settings.outbox_path / "email").rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, ParsedEmail)
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        found.append(
            Mail(
                to=str(message["To"]),
                subject=str(message["Subject"]),
                date=parsedate_to_datetime(str(message["Date"])),
                campaign=str(message["X-Tidings-Campaign"]),
                text=text_part.get_content().replace("\r\n", "\n") if text_part is not None else "",
                html=html_part.get_content() if html_part is not None else "",
                headers=message,
            )
        )
    return found
