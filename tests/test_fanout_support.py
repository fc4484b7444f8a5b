"""Builders for the scale-out tests: a real workspace on disk, many outbox rows at once, Redis cleanup.

No tests in this module.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from servers.sendgrid_server import SendGridServer
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from test_dispatch_support import write_templates

from engine.store.models import Consent, Contact, Delivery

SECRET = "s" * 40
CONTACT = Contact.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]

HOLIDAY = """\
name: Holiday greetings
status: active
audience:
  where:
    - consent: email
trigger:
  at: 2026-12-01T10:00
steps:
  - id: main
    send: {channel: email, template: greeting}
"""


def write_workspace(root: Path) -> Path:
    """A workspace that validates: one active email campaign ``holiday`` sending ``greeting``."""
    write_templates(root)
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    (root / "campaigns" / "holiday.yaml").write_text(HOLIDAY, encoding="utf-8")
    return root


def add_outbox(engine: Engine, count: int, *, now: datetime, campaign: str = "holiday") -> list[int]:
    """``count`` consenting contacts with one due ``greeting`` row each; returns the delivery ids."""
    tag = uuid.uuid4().hex[:6]
    contacts = [
        {
            "email": f"c{i}-{tag}@example.com",
            "first_name": f"C{i}",
            "timezone": "Europe/Tallinn",
            "tags": [],
            "attributes": {},
            "total_spent": Decimal("0"),
            "created_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        ids = [
            row[0]
            for row in conn.execute(
                insert(CONTACT).returning(CONTACT.c.id, sort_by_parameter_order=True), contacts
            )
        ]
        conn.execute(
            insert(Consent),
            [{"contact_id": cid, "channel": "email", "granted_at": now, "source": "test"} for cid in ids],
        )
        rows = [
            {
                "idempotency_key": f"{campaign}:main:{cid}:2026-12-01",
                "campaign_id": campaign,
                "step_id": "main",
                "contact_id": cid,
                "channel": "email",
                "category": "marketing",
                "template": "greeting",
                "occurrence": "2026-12-01",
                "scheduled_for": now,
                "created_at": now,
                "context": {},
            }
            for cid in ids
        ]
        return [
            row[0]
            for row in conn.execute(
                insert(DELIVERY).returning(DELIVERY.c.id, sort_by_parameter_order=True), rows
            )
        ]


def states(engine: Engine) -> Counter[str]:
    table = DELIVERY
    with engine.connect() as conn:
        return Counter(
            {
                state: n
                for state, n in conn.execute(select(table.c.state, func.count()).group_by(table.c.state))
            }
        )


def received_by_delivery(server: SendGridServer) -> Counter[str]:
    """How many times the provider accepted each ``X-Tidings-Delivery``."""
    return Counter(str(mail.body["headers"]["X-Tidings-Delivery"]) for mail in server.accepted)


def delete_redis_keys(url: str, *needles: str) -> None:
    """Remove the keys a test created in its Redis database (its queue, bindings, worker mailboxes)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for needle in needles:
            for key in client.scan_iter(match=f"*{needle}*"):
                client.delete(key)
    finally:
        client.close()
