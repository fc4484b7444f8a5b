"""A small real workspace and store for the scheduler, daemon, event-pump and simulation tests.

No tests here.

Contacts live in three zones whose clocks change on different days (London and Tallinn on
the last Sunday of October, New York a week later), so one short span covers both DST changes.
"""

from __future__ import annotations

import email
import email.policy
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from test_planner_support import add_contacts

from engine.settings import Settings
from engine.store.models import Delivery, ShopEvent
from engine.workspace.loader import Workspace, load_workspace

REPO = Path(__file__).resolve().parents[1]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]

HELLO = """---
subject: "Hello {{ contact.first_name }}"
---
<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hello {{ contact.first_name }}.</mj-text>
      <mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""

SAMPLE = (
    "contact: {id: 1, email: ada@example.com, first_name: Ada, locale: en, country: EE,"
    " timezone: Europe/Tallinn}\n"
)

SEGMENTS = """\
segments:
  everyone:
    where:
      - consent: email
"""

SCHEDULE = """\
dates:
  launch: 2026-10-27
shipping_cutoffs:
  deliver_before: 2026-11-06
  cutoffs:
    - {country: GB, method: standard, carrier: Royal Mail, order_by: "2026-10-26 12:00",
       timezone: Europe/London}
    - {country: EE, method: standard, carrier: Omniva, order_by: "2026-10-26 12:00", timezone: Europe/Tallinn}
    - {country: US, method: standard, carrier: USPS, order_by: "2026-11-02 17:00", timezone: America/New_York}
  default: {method: standard}
"""

#: (country, zone) of the test contacts, in id order, repeated.
PEOPLE = [("GB", "Europe/London"), ("EE", "Europe/Tallinn"), ("US", "America/New_York")]


def make_workspace(root: Path, campaigns: dict[str, str]) -> Path:
    """``root`` with templates ``hello`` (email) and ``tick`` (post), a segment, a schedule, ``campaigns``."""
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    (root / "campaigns" / "segments.yaml").write_text(SEGMENTS, encoding="utf-8")
    (root / "schedules").mkdir(exist_ok=True)
    (root / "schedules" / "season.yaml").write_text(SCHEDULE, encoding="utf-8")
    hello = root / "templates" / "hello"
    hello.mkdir(parents=True, exist_ok=True)
    (hello / "email.mjml").write_text(HELLO, encoding="utf-8")
    (hello / "sample.yaml").write_text(SAMPLE, encoding="utf-8")
    tick = root / "templates" / "tick"
    tick.mkdir(parents=True, exist_ok=True)
    (tick / "post.txt").write_text("Still open: {{ shop.url }}\n", encoding="utf-8")
    (tick / "sample.yaml").write_text(SAMPLE, encoding="utf-8")
    for key, text in campaigns.items():
        write_campaign(root, key, text)
    return root


def write_campaign(root: Path, key: str, text: str) -> None:
    (root / "campaigns" / f"{key}.yaml").write_text(text, encoding="utf-8")


def copy_shipped_workspace(root: Path) -> Path:
    """The repository's own campaigns/, templates/ and schedules/ under ``root``."""
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, root / part)
    return root


def load(root: Path, zone: str = "UTC") -> Workspace:
    result = load_workspace(root, default_timezone=zone)
    assert result.ok, [str(e) for e in result.errors]
    return result.workspace


def settings_for(root: Path, database: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": root,
        "database_url": f"sqlite:///{database}",
        "secret_key": "s" * 40,
        "concurrency": 2,
        "email_rate_per_second": 100_000,
        "outbox_dir": root / "var" / "outbox",
    }
    values.update(overrides)
    return Settings(**values)


def add_people(engine: Engine, count: int, *, first_id: int = 1) -> list[int]:
    """``count`` consenting contacts spread over :data:`PEOPLE`'s zones; returns their ids."""
    rows: list[dict[str, Any]] = []
    for offset in range(count):
        contact_id = first_id + offset
        country, zone = PEOPLE[offset % len(PEOPLE)]
        rows.append(
            {
                "id": contact_id,
                "email": f"person{contact_id}@example.com",
                "first_name": f"P{contact_id}",
                "locale": "en",
                "country": country,
                "timezone": zone,
                "first_seen_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
        )
    add_contacts(engine, rows)
    return [row["id"] for row in rows]


def add_event(engine: Engine, contact_id: int, kind: str, occurred_at: datetime, **payload: Any) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(EVENT).values(
                type=kind,
                contact_id=contact_id,
                occurred_at=occurred_at,
                payload=payload,
                external_id=f"test-{kind}-{contact_id}-{occurred_at.isoformat()}",
                received_at=occurred_at,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])


def delivery_states(engine: Engine, campaign_id: str | None = None) -> Counter[str]:
    query = select(DELIVERY.c.state, func.count()).group_by(DELIVERY.c.state)
    if campaign_id is not None:
        query = query.where(DELIVERY.c.campaign_id == campaign_id)
    with engine.connect() as conn:
        return Counter({state: count for state, count in conn.execute(query)})


def sent_rows(engine: Engine, campaign_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(DELIVERY).where(DELIVERY.c.campaign_id == campaign_id, DELIVERY.c.state == "sent")
            )
        )


def outbox_messages(folder: Path) -> list[tuple[str, str]]:
    """(campaign, delivery id) of every ``.eml`` file under ``folder``, from their X-Tidings headers."""
    found = []
    for path in sorted(folder.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.append((str(message["X-Tidings-Campaign"]), str(message["X-Tidings-Delivery"])))
    return found
