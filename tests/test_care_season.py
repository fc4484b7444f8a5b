"""The season's customer care, simulated: the shipped workspace over the demo shop, as ``tidings simulate``.

One simulation (600 contacts, 20 November to 21 January: Christmas gift cards bought and arriving
on their day, December's and January's promotions, the January returns, exchanges and claims)
runs once for the module, as a user runs it. The tests read its JSON report, its kept store
(``--keep``) and its outbox, and check each promise against the shop's own events, computed here
independently:

* every gift card bought for someone with a chosen day arrived that day at 09:00 in the
  recipient's zone;
* no promotion went to a contact while one of their returns or claims was open, and the report
  names how many were held back;
* every email says how to reach the shop.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cli_support import TIDINGS
from sqlalchemy import select
from test_daemon_support import copy_shipped_workspace

from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.runtime.facts import MessageFacts
from engine.runtime.zones import resolve_zone
from engine.settings import Settings
from engine.store import make_engine, upgrade
from engine.store.models import Contact, Delivery, GiftCard, ShopEvent, ShopOrder

pytestmark = pytest.mark.slow

CONTACTS = 600
SPAN = ("2026-11-20", "2027-01-21")  # from the first gift card bought to the win-back
RETURN_DAYS = 30  # TIDINGS_RETURN_OPEN_DAYS's default
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
CARD = GiftCard.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = copy_shipped_workspace(tmp_path_factory.mktemp("care-season"))
    database = root / "var" / "tidings.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    generate_demo_shop(
        engine, contacts=CONTACTS, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    )
    engine.dispose()
    kept = root / "var" / "season.db"
    env = {
        **os.environ,
        "TIDINGS_WORKSPACE": str(root),
        "TIDINGS_SECRET_KEY": "k" * 40,
        "TIDINGS_DATABASE_URL": "sqlite:///var/tidings.db",
        "TIDINGS_TIMEZONE": "Europe/Tallinn",
    }
    done = subprocess.run(
        [str(TIDINGS), "simulate", "--from", SPAN[0], "--to", SPAN[1], "--json", "--keep", str(kept)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    store = make_engine(f"sqlite:///{kept}")
    with store.connect() as conn:
        rows = {
            "deliveries": conn.execute(select(DELIVERY)).all(),
            "events": conn.execute(select(EVENT).order_by(EVENT.c.occurred_at, EVENT.c.id)).all(),
            "contacts": {row.id: row for row in conn.execute(select(CONTACT))},
            "cards": {row.external_id: row for row in conn.execute(select(CARD))},
            "orders": {row.external_id: row for row in conn.execute(select(ORDER))},
        }
    store.dispose()
    return {"report": json.loads(done.stdout), **rows}


def _in_span(moment: datetime) -> bool:
    zone = ZoneInfo("Europe/Tallinn")
    day = moment.astimezone(zone).date()
    return date.fromisoformat(SPAN[0]) <= day <= date.fromisoformat(SPAN[1])


def test_recipients_are_greeted_on_their_chosen_day_at_nine_their_time(season: dict[str, Any]) -> None:
    default = Settings(_env_file=None, timezone="Europe/Tallinn").zone  # type: ignore[call-arg]
    events = {event.id: event for event in season["events"]}
    by_card = {}
    for row in season["deliveries"]:
        if row.campaign_id == "gift-card-delivery":
            by_card[events[MessageFacts.from_json(row.context).event_id].payload["gift_card_id"]] = row
    checked = 0
    for event in season["events"]:
        payload = event.payload or {}
        if (
            event.type != "gift_card.purchased"
            or not payload.get("send_on")
            or not payload.get("recipient_email")
        ):
            continue
        card = season["cards"][payload["gift_card_id"]]
        recipient = season["contacts"][card.recipient_contact_id]
        zone = resolve_zone(recipient.timezone, recipient.country, cutoff_zone=None, default=default).zone
        due = datetime.combine(date.fromisoformat(payload["send_on"]), time(9, 0), tzinfo=zone)
        if (
            not card.is_digital
            or not _in_span(event.occurred_at)
            or not _in_span(due)
            or due <= event.occurred_at
        ):
            continue
        row = by_card[card.external_id]
        assert row.contact_id == recipient.id  # the recipient's message, not the buyer's
        assert row.scheduled_for == due.astimezone(UTC), (card.external_id, row.scheduled_for, due)
        if row.state == "sent":
            assert row.sent_at == due.astimezone(UTC)
            checked += 1
        else:  # a recipient whose address bounced before: skipped, and the row says why
            assert row.state == "skipped" and row.reason.startswith("suppressed:"), (row.state, row.reason)
    assert checked >= 5  # Christmas Eve and its neighbours, in Tallinn, Bucharest and New York


def _open_cases(events: list[Any], orders: dict[str, Any]) -> dict[int, list[tuple[datetime, datetime, str]]]:
    """Per contact, the spans during which a return, exchange or claim of theirs was open."""
    spans: dict[int, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    never = datetime.max.replace(tzinfo=UTC)
    for event in events:
        payload = event.payload or {}
        if event.type == "return.requested":
            order = orders.get(payload.get("order_id"))
            done = order.returned_at if order is not None and order.returned_at else never
            end = min(done, event.occurred_at + timedelta(days=RETURN_DAYS))
            spans[event.contact_id].append((event.occurred_at, end, "return"))
        elif event.type == "exchange.requested":
            shipped = [
                e.occurred_at
                for e in events
                if e.type == "exchange.shipped"
                and e.contact_id == event.contact_id
                and (e.payload or {}).get("order_id") == payload.get("order_id")
                and e.occurred_at >= event.occurred_at
            ]
            end = min([*shipped, event.occurred_at + timedelta(days=RETURN_DAYS)])
            spans[event.contact_id].append((event.occurred_at, end, "exchange"))
        elif event.type == "claim.opened":
            resolved = [
                e.occurred_at
                for e in events
                if e.type == "claim.resolved"
                and e.contact_id == event.contact_id
                and (e.payload or {}).get("claim_id") == payload.get("claim_id")
                and e.occurred_at >= event.occurred_at
            ]
            spans[event.contact_id].append((event.occurred_at, min(resolved, default=never), "claim"))
    return spans


def test_no_promotion_reaches_a_contact_while_their_return_or_claim_is_open(season: dict[str, Any]) -> None:
    spans = _open_cases(season["events"], season["orders"])
    promotions = [r for r in season["deliveries"] if r.category == "marketing" and r.state == "sent"]
    assert len(promotions) > 100
    for row in promotions:
        for start, end, kind in spans.get(row.contact_id, []):
            assert not start <= row.sent_at < end, (row.campaign_id, row.contact_id, kind, row.sent_at)
    held = [r for r in season["deliveries"] if (r.reason or "").startswith("held:")]
    assert held, "the demo season has promotions planned for customers with an open return or claim"
    for row in held:
        kind = {"held:claim_open": "claim", "held:return_open": ("return", "exchange")}[row.reason]
        when = row.updated_at or row.scheduled_for
        assert any(start <= when < end and k in kind for start, end, k in spans[row.contact_id]), (
            row.campaign_id,
            row.contact_id,
            row.reason,
        )


def test_the_report_names_how_many_promotions_were_held_back(season: dict[str, Any]) -> None:
    reported: dict[str, int] = defaultdict(int)
    for campaign in season["report"]["campaigns"].values():
        for reason, count in campaign["skipped"].items():
            if reason.startswith("held:"):
                reported[reason] += count
    in_store: dict[str, int] = defaultdict(int)
    for row in season["deliveries"]:
        if (row.reason or "").startswith("held:") and row.state == "skipped":
            in_store[row.reason] += 1
    assert reported == in_store and sum(reported.values()) > 0
    assert set(reported) <= {"held:claim_open", "held:return_open"}


def test_every_email_of_the_season_says_how_to_reach_the_shop(season: dict[str, Any]) -> None:
    outbox = Path(season["report"]["outbox_dir"]) / "email"
    files = sorted(outbox.rglob("*.eml"))
    assert len(files) == season["report"]["totals"]["sent"] - sum(
        c["by_channel"].get("x", 0) for c in season["report"]["campaigns"].values()
    )
    support = Settings(_env_file=None).shop.as_context()["support"]  # type: ignore[call-arg]
    campaigns = set()
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert support["email"] in text and support["phone"] in text, path.name
        campaigns.add(str(message["X-Tidings-Campaign"]))
    assert {
        "gift-card-delivery",
        "gift-card-waiting",
        "gift-card-welcome",
        "return-received",
        "claim-opened",
    } <= campaigns
