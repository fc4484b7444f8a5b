"""Gift cards from the day they arrive: the shipped delivery and "still waiting" campaigns, end to end.

A buyer's ``gift_card.purchased`` event goes in as the shop posts it; the recipient becomes a
contact; the shipped flows wait for ``send_on`` at 09:00 in the *recipient's* zone, write the
message for the recipient (``to: recipient``) and the dispatcher sends it to the file outbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from care_support import (
    DELIVERY,
    ENROLMENT,
    Shop,
    care_settings,
    open_shop,
    outbox,
    planned_for,
    post_events,
    shop_event,
)
from sqlalchemy import select
from sqlalchemy.engine import Engine
from test_dispatch_support import campaign, workspace

from engine.clock import FakeClock
from engine.runtime.event_pump import pump_due_events
from engine.runtime.facts import MessageFacts
from engine.runtime.flows import advance_due
from engine.store.models import Consent
from engine.workspace.loader import Workspace

CONSENT = Consent.__table__  # type: ignore[attr-defined]
BOUGHT = datetime(2026, 12, 15, 18, 20, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")
TALLINN = ZoneInfo("Europe/Tallinn")
BUYER = {"email": "kadri@example.com", "first_name": "Kadri", "locale": "et", "country": "EE"}


def purchase(
    card: str,
    *,
    recipient: str | None = "liis@example.com",
    send_on: str | None = "2026-12-24",
    country: str = "US",
    locale: str = "en",
    at: datetime = BOUGHT,
    **extra: object,
) -> dict[str, object]:
    data: dict[str, object] = {"gift_card_id": card, "amount": "50.00", "currency": "EUR", **extra}
    if recipient is not None:
        data.update(
            recipient_email=recipient,
            recipient_name="Liis Mägi",
            recipient_locale=locale,
            recipient_country=country,
            sender_name="Kadri",
            message="Häid jõule!\nKallistades",
            redeem_url=f"https://shop.example.com/gift-cards/redeem/{card}",
        )
    if send_on is not None:
        data["send_on"] = send_on
    return shop_event("gift_card.purchased", f"buy-{card}", at, BUYER, data)


@pytest.fixture
def shop(store_engine: Engine, tmp_path: Path) -> Iterator[Shop]:
    opened = open_shop(store_engine, tmp_path, FakeClock(BOUGHT))
    yield opened
    opened.close()


def test_a_card_bought_for_someone_reaches_them_on_its_day_at_nine_their_time(shop: Shop) -> None:
    post_events(shop.engine, [purchase("GC-1")], now=BOUGHT)
    shop.at(BOUGHT)
    assert shop.deliveries(campaign_id="gift-card-delivery") == []  # it waits for its day
    nine_in_new_york = datetime(2026, 12, 24, 9, 0, tzinfo=NEW_YORK)
    (waiting,) = shop.enrolments("gift-card-delivery")
    assert waiting.wake_at == nine_in_new_york.astimezone(UTC)

    shop.at(nine_in_new_york - timedelta(minutes=1))
    assert shop.deliveries(campaign_id="gift-card-delivery") == []
    shop.at(nine_in_new_york)
    (row,) = shop.deliveries(campaign_id="gift-card-delivery")
    (mail,) = [m for m in outbox(shop.settings) if m.campaign == "gift-card-delivery"]
    assert mail.to == "Liis Mägi <liis@example.com>"
    assert mail.date.astimezone(NEW_YORK) == nine_in_new_york
    assert mail.subject == "Kadri sent you a €50.00 gift card"
    assert "“Häid jõule!\nKallistades”\n– Kadri" in mail.text  # the buyer's note, line break kept
    assert "https://shop.example.com/gift-cards/redeem/GC-1?" in mail.text  # the link that opens this card
    assert "List-Unsubscribe" not in mail.headers  # the card is theirs: a service message
    facts = MessageFacts.from_json(row.context)
    assert (facts.zone, facts.zone_source) == ("America/New_York", "country")
    assert facts.event_id is not None and row.state == "sent" and row.category == "transactional"


def test_the_recipient_reads_it_in_their_own_language(shop: Shop) -> None:
    post_events(shop.engine, [purchase("GC-2", country="RO", locale="ro", send_on=None)], now=BOUGHT)
    shop.at(BOUGHT)
    (mail,) = outbox(shop.settings)
    assert mail.subject == "Kadri ți-a trimis un card cadou de 50,00 EUR"
    assert mail.to.endswith("<liis@example.com>")


def test_without_a_chosen_day_or_with_one_already_past_the_card_goes_out_at_once(shop: Shop) -> None:
    post_events(
        shop.engine,
        [purchase("GC-3", send_on=None), purchase("GC-4", recipient="ott@example.com", send_on="2026-12-01")],
        now=BOUGHT,
    )
    shop.at(BOUGHT)
    assert sorted(m.to for m in outbox(shop.settings)) == [
        "Liis Mägi <liis@example.com>",
        "Liis Mägi <ott@example.com>",
    ]
    assert {m.date for m in outbox(shop.settings)} == {BOUGHT}


def test_a_paper_card_or_one_bought_for_oneself_sends_the_recipient_nothing(shop: Shop) -> None:
    post_events(
        shop.engine,
        [purchase("GC-5", is_digital=False), purchase("GC-6", recipient=None, send_on=None)],
        now=BOUGHT,
    )
    shop.at(BOUGHT)
    shop.at(datetime(2027, 1, 20, tzinfo=UTC))
    assert outbox(shop.settings) == [] and shop.enrolments("gift-card-delivery") == []


def test_the_recipient_becomes_a_contact_without_marketing_consent_and_gets_no_promotion(shop: Shop) -> None:
    post_events(shop.engine, [purchase("GC-7", send_on=None)], now=BOUGHT)
    shop.at(BOUGHT)
    (row,) = shop.deliveries(campaign_id="gift-card-delivery")
    with shop.engine.connect() as conn:
        consents = conn.execute(select(CONSENT).where(CONSENT.c.contact_id == row.contact_id)).all()
    assert consents == []
    for campaign_id, template in (
        ("holiday-greetings", "holiday-greeting"),
        ("gift-card-follow-up", "gift-card-ideas"),
    ):
        planned_for(shop, row.contact_id, campaign_id, template)
    shop.tick()
    refused = {(r.campaign_id, r.state, r.reason) for r in shop.deliveries() if r.category == "marketing"}
    assert refused == {
        ("holiday-greetings", "skipped", "no_consent"),
        ("gift-card-follow-up", "skipped", "no_consent"),
    }
    assert [m.campaign for m in outbox(shop.settings)] == ["gift-card-delivery"]


def test_the_nudge_reaches_only_recipients_whose_card_is_still_unused_two_weeks_later(shop: Shop) -> None:
    used = purchase("GC-8", recipient="used@example.com", send_on="2026-12-24", country="EE", locale="et")
    unused = purchase("GC-9", recipient="unused@example.com", send_on="2026-12-24", country="EE", locale="et")
    post_events(shop.engine, [used, unused], now=BOUGHT)
    shop.at(BOUGHT)
    delivered = datetime(2026, 12, 24, 9, 0, tzinfo=TALLINN)
    shop.at(delivered)
    redeemed_at = delivered + timedelta(days=3)
    recipient = {"email": "used@example.com"}
    redeem = {"gift_card_id": "GC-8", "amount": "50.00", "balance": "20.00", "currency": "EUR"}
    post_events(
        shop.engine,
        [shop_event("gift_card.redeemed", "use-GC-8", redeemed_at, recipient, redeem)],
        now=redeemed_at,
    )
    shop.at(redeemed_at)
    nudge_time = datetime(2027, 1, 7, 10, 0, tzinfo=TALLINN)  # 14 days after 09:00, then the next 10:00
    shop.at(nudge_time - timedelta(minutes=1))
    assert shop.deliveries(campaign_id="gift-card-waiting") == []
    shop.at(nudge_time)
    nudges = [m for m in outbox(shop.settings) if m.campaign == "gift-card-waiting"]
    assert [m.to for m in nudges] == ["Liis Mägi <unused@example.com>"]
    assert nudges[0].date == nudge_time
    assert "50,00" in nudges[0].subject  # the balance, read when the nudge was decided and sent
    states = {row.state for row in shop.enrolments("gift-card-waiting")}
    assert states == {"completed"}


def test_a_card_whose_recipient_was_forgotten_ends_the_flow_with_a_named_reason(shop: Shop) -> None:
    from engine.feedback.contact_data import forget_contact

    post_events(shop.engine, [purchase("GC-10")], now=BOUGHT)
    shop.at(BOUGHT)
    forget_contact(shop.engine, "liis@example.com", now=BOUGHT + timedelta(hours=1))
    shop.at(datetime(2026, 12, 24, 9, 0, tzinfo=NEW_YORK))
    (enrolment,) = shop.enrolments("gift-card-delivery")
    assert (enrolment.state, enrolment.end_reason) == ("exited", "no_recipient")
    assert outbox(shop.settings) == []


def _flow(steps: list[dict[str, object]]) -> Workspace:
    return workspace(
        campaign(
            "card-flow",
            category="transactional",
            audience=None,
            trigger={"event": {"type": "gift_card.purchased"}},
            steps=steps,
        )
    )


def test_a_wait_until_a_time_of_day_is_in_the_zone_of_whoever_the_next_send_goes_to(
    store_engine: Engine, clock: FakeClock
) -> None:
    clock.set(BOUGHT)
    post_events(store_engine, [purchase("GC-20")], now=BOUGHT)  # buyer in Tallinn, recipient in New York
    flow = _flow(
        [
            {"wait": {"duration": "1d", "until_time": "10:00"}},
            {"id": "to-them", "send": {"template": "gift-card-delivery", "to": "recipient"}},
            {"wait": {"duration": "1d", "until_time": "10:00"}},
            {"id": "to-buyer", "send": {"template": "gift-card-delivery"}},
        ]
    )
    settings = care_settings(Path("."))
    pump_due_events(store_engine, flow, clock, settings)
    with store_engine.connect() as conn:
        (enrolment,) = conn.execute(select(ENROLMENT)).all()
    assert enrolment.wake_at == datetime(2026, 12, 17, 10, 0, tzinfo=NEW_YORK).astimezone(UTC)
    clock.set(enrolment.wake_at)
    advance_due(store_engine, flow, clock, settings)
    with store_engine.connect() as conn:
        (enrolment,) = conn.execute(select(ENROLMENT)).all()
    # a day after 10:00 in New York (17:00 in Tallinn), then the next 10:00 in the buyer's Tallinn
    assert enrolment.wake_at == datetime(2026, 12, 19, 10, 0, tzinfo=TALLINN).astimezone(UTC)


def test_an_until_date_that_is_not_a_date_ends_the_flow_with_a_named_reason(
    store_engine: Engine, clock: FakeClock
) -> None:
    clock.set(BOUGHT)
    post_events(store_engine, [purchase("GC-21", send_on=None, note_day="soon")], now=BOUGHT)
    flow = _flow(
        [
            {"wait": {"until_date": "event.data.note_day"}},
            {"send": {"template": "gift-card-delivery", "to": "recipient"}},
        ]
    )
    pump_due_events(store_engine, flow, clock, care_settings(Path(".")))
    with store_engine.connect() as conn:
        (enrolment,) = conn.execute(select(ENROLMENT)).all()
        assert conn.execute(select(DELIVERY)).all() == []
    assert enrolment.state == "exited"
    assert enrolment.end_reason == (
        "expression_error: until_date 'event.data.note_day' is 'soon', not a date (card-flow:1)"
    )
