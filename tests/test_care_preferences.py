"""Preferences short of leaving: the unsubscribe page offers topics and a pause, and the gate honours them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from care_support import (
    Shop,
    customer,
    open_shop,
    planned_for,
    post_events,
    public_client,
    shop_event,
)
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.feedback.contact_data import export_contact, forget_contact
from engine.feedback.preferences import pause_options
from engine.store.models import Consent, Snooze, Suppression, TopicOptOut
from engine.tokens import UnsubscribeTokens

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
HTML = {"Accept": "text/html"}
SNOOZE = Snooze.__table__  # type: ignore[attr-defined]
TOPICS = TopicOptOut.__table__  # type: ignore[attr-defined]


@pytest.fixture
def shop(store_engine: Engine, tmp_path: Path) -> Iterator[Shop]:
    opened = open_shop(store_engine, tmp_path, FakeClock(NOW))
    yield opened
    opened.close()


@pytest.fixture
def client(shop: Shop) -> Iterator[TestClient]:
    with public_client(shop) as test_client:
        yield test_client


def token_for(shop: Shop, contact_id: int, campaign: str = "holiday-greetings") -> str:
    return UnsubscribeTokens(shop.settings.secret_key_value()).sign(contact_id, "email", campaign)


def test_the_page_offers_the_shops_topics_and_a_pause_in_the_readers_language(
    shop: Shop, client: TestClient
) -> None:
    ioana = customer(shop.engine, "ioana@example.com", locale="ro", country="RO", timezone=None, now=NOW)
    page = client.get(f"/u/{token_for(shop, ioana)}")
    assert page.status_code == 200 and 'lang="ro"' in page.text
    for topic, label in (
        ("offers", "Oferte și reduceri"),
        ("reminders", "Mementouri cu termenele de comandă înainte de Crăciun"),
        ("tips", "Idei de cadouri și ajutor la schimburi"),
    ):
        assert f'name="topic" value="{topic}"' in page.text and label in page.text
    assert "Pauză până la 6 ianuarie 2027 inclusiv" in page.text  # the end of the holidays
    assert 'name="pause" value="2027-01-06"' in page.text
    assert "Dezabonare" in page.text  # leaving everything is still one button away


def test_the_pause_offers_the_end_of_the_holidays_only_while_it_is_near() -> None:
    assert date(2027, 1, 6) in pause_options(date(2026, 12, 20))
    assert date(2027, 1, 6) in pause_options(date(2027, 1, 2))
    assert not any(day.month == 1 and day.day == 6 for day in pause_options(date(2027, 3, 1)))
    assert pause_options(date(2027, 3, 1)) == [date(2027, 3, 15), date(2027, 3, 31), date(2027, 5, 31)]


def test_leaving_a_topic_keeps_the_others_and_the_subscription(shop: Shop, client: TestClient) -> None:
    ann = customer(shop.engine, "ann@example.com", locale="et", order="NB-1", now=NOW)
    form = {
        "form": "preferences",
        "topic_shown": ["offers", "reminders", "tips"],
        "topic": ["offers"],
        "pause": "",
    }
    done = client.post(f"/u/{token_for(shop, ann)}", data=form, headers=HTML)
    assert done.status_code == 200
    assert (
        "Teie valikud on salvestatud" in done.text
        and "Enam ei saadeta: Pakkumised ja allahindlused" in done.text
    )
    with shop.engine.connect() as conn:
        assert conn.execute(
            select(TOPICS.c.topic, TOPICS.c.source).where(TOPICS.c.contact_id == ann)
        ).all() == [("offers", "preferences page:holiday-greetings")]
        assert conn.execute(select(Suppression.__table__)).all() == []  # type: ignore[attr-defined]
        consent = Consent.__table__  # type: ignore[attr-defined]
        assert (
            conn.execute(select(consent.c.withdrawn_at).where(consent.c.contact_id == ann)).scalar() is None
        )
    planned_for(shop, ann, "holiday-greetings", "holiday-greeting")  # topic: offers
    planned_for(shop, ann, "january-exchange-help", "exchange-help")  # topic: tips
    shop.tick()
    states = {row.campaign_id: (row.state, row.reason) for row in shop.deliveries()}
    assert states == {
        "holiday-greetings": ("skipped", "topic_opt_out:offers"),
        "january-exchange-help": ("sent", None),
    }
    page = client.get(f"/u/{token_for(shop, ann)}")
    assert 'name="topic" value="offers" checked' in page.text  # the page shows what was left …
    back = {"form": "preferences", "topic_shown": ["offers", "reminders", "tips"], "pause": ""}
    again = client.post(f"/u/{token_for(shop, ann)}", data=back, headers=HTML)
    assert "Taas saadetakse: Pakkumised ja allahindlused" in again.text  # … and unticking it comes back
    with shop.engine.connect() as conn:
        assert conn.execute(select(TOPICS)).all() == []


def test_a_pause_through_6_january_skips_promotions_until_the_7th_in_the_readers_zone(
    shop: Shop, client: TestClient
) -> None:
    ann = customer(shop.engine, "ann@example.com", timezone="America/New_York", order="NB-7", now=NOW)
    form = {"form": "preferences", "topic_shown": ["offers", "reminders", "tips"], "pause": "2027-01-06"}
    done = client.post(f"/u/{token_for(shop, ann)}", data=form, headers=HTML)
    assert "Paused: no offers or news through January 6, 2027." in done.text
    with shop.engine.connect() as conn:
        through, until = conn.execute(select(SNOOZE.c.through, SNOOZE.c.until)).one()
    assert through == date(2027, 1, 6)
    assert until == datetime(2027, 1, 7, 5, 0, tzinfo=UTC)  # midnight in New York
    planned_for(shop, ann, "holiday-greetings", "holiday-greeting")
    contact = {"email": "ann@example.com"}
    claim = {"claim_id": "CL-1", "order_id": "NB-7", "reason": "damaged"}
    post_events(shop.engine, [shop_event("claim.opened", "c1", NOW, contact, claim)], now=NOW)
    shop.tick()
    states = {row.campaign_id: (row.state, row.reason) for row in shop.deliveries()}
    # a message about their own claim is not paused
    assert states == {"holiday-greetings": ("skipped", "snoozed"), "claim-opened": ("sent", None)}
    resolved = {**claim, "resolution": "refund"}
    post_events(shop.engine, [shop_event("claim.resolved", "c2", NOW, contact, resolved)], now=NOW)
    page = client.get(f"/u/{token_for(shop, ann)}")
    assert "Paused: no offers or news through January 6, 2027." in page.text
    assert 'value="2027-01-06" checked' in page.text
    shop.clock.set(until - timedelta(minutes=1))
    planned = planned_for(shop, ann, "january-win-back", "win-back")
    shop.tick()
    (during,) = [row for row in shop.deliveries() if row.id == planned]
    assert (during.state, during.reason) == ("skipped", "snoozed")
    shop.clock.set(datetime(2027, 1, 7, 10, 0, tzinfo=ZoneInfo("America/New_York")))
    after = planned_for(shop, ann, "holiday-greetings", "holiday-greeting", occurrence="after")
    shop.tick()
    (sent,) = [row for row in shop.deliveries() if row.id == after]
    assert (sent.state, sent.reason) == ("sent", None)  # the pause ended by itself


def test_ending_a_pause_early_and_refusing_a_day_in_the_past(shop: Shop, client: TestClient) -> None:
    ann = customer(shop.engine, "ann@example.com", now=NOW)
    token = token_for(shop, ann)
    client.post(f"/u/{token}", data={"form": "preferences", "pause": "2027-01-06"}, headers=HTML)
    past = client.post(f"/u/{token}", data={"form": "preferences", "pause": "2026-12-01"})
    assert past.status_code == 400 and "after today" in past.text
    ended = client.post(f"/u/{token}", data={"form": "preferences", "pause": ""}, headers=HTML)
    assert "Your pause has ended" in ended.text
    with shop.engine.connect() as conn:
        assert conn.execute(select(SNOOZE)).all() == []


def test_a_topic_the_shop_does_not_have_is_refused_and_changes_nothing(
    shop: Shop, client: TestClient
) -> None:
    ann = customer(shop.engine, "ann@example.com", now=NOW)
    answer = client.post(
        f"/u/{token_for(shop, ann)}", data={"form": "preferences", "topic_shown": ["nope"], "topic": ["nope"]}
    )
    assert answer.status_code == 400
    with shop.engine.connect() as conn:
        assert conn.execute(select(TOPICS)).all() == []


def test_one_click_is_still_a_full_unsubscribe(shop: Shop, client: TestClient) -> None:
    ann = customer(shop.engine, "ann@example.com", now=NOW)
    answer = client.post(
        f"/u/{token_for(shop, ann)}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    with shop.engine.connect() as conn:
        suppressions = conn.execute(select(Suppression.__table__)).all()  # type: ignore[attr-defined]
        assert [(row.email, row.reason) for row in suppressions] == [("ann@example.com", "unsubscribe")]
        assert conn.execute(select(TOPICS)).all() == [] and conn.execute(select(SNOOZE)).all() == []


def test_saving_preferences_does_not_unsubscribe_a_channel_nobody_ticked(
    shop: Shop, client: TestClient
) -> None:
    ann = customer(shop.engine, "ann@example.com", now=NOW)
    client.post(
        f"/u/{token_for(shop, ann)}", data={"form": "preferences", "pause": "2027-01-06"}, headers=HTML
    )
    with shop.engine.connect() as conn:
        assert conn.execute(select(Suppression.__table__)).all() == []  # type: ignore[attr-defined]


def test_a_pause_lasts_at_most_a_year(shop: Shop, client: TestClient) -> None:
    ann = customer(shop.engine, "ann@example.com", now=NOW)
    far = (NOW + timedelta(days=400)).date().isoformat()
    refused = client.post(f"/u/{token_for(shop, ann)}", data={"form": "preferences", "pause": far})
    assert refused.status_code == 400 and "at most 366 days" in refused.text
    with shop.engine.connect() as conn:
        assert conn.execute(select(SNOOZE)).all() == []


def test_a_contacts_export_shows_their_topics_and_pause_and_forgetting_erases_them(
    shop: Shop, client: TestClient
) -> None:
    ann = customer(shop.engine, "ann@example.com", now=NOW)
    form = {"form": "preferences", "topic_shown": ["offers"], "topic": ["offers"], "pause": "2027-01-06"}
    client.post(f"/u/{token_for(shop, ann)}", data=form, headers=HTML)
    exported = export_contact(shop.engine, "ann@example.com")
    assert exported is not None
    assert [row["topic"] for row in exported["topics_left"]] == ["offers"]
    assert [row["through"] for row in exported["pause"]] == ["2027-01-06"]
    forget_contact(shop.engine, "ann@example.com", now=NOW)
    with shop.engine.connect() as conn:
        assert conn.execute(select(TOPICS)).all() == [] and conn.execute(select(SNOOZE)).all() == []
