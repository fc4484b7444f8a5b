"""The policy gate: each refusal named, transactional vs marketing, caps, quiet hours, windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, add_suppression

from engine.clock import FakeClock
from engine.runtime.policy import (
    CampaignRules,
    FrequencyCap,
    QuietHours,
    RecipientFacts,
    decide,
    load_recipient_facts,
    note_sent,
)
from engine.store.suppressions import email_digest

NOW = datetime(2026, 12, 10, 10, 0, tzinfo=UTC)  # 12:00 in Tallinn
TALLINN = ZoneInfo("Europe/Tallinn")
MARKETING = CampaignRules("holiday")
TRANSACTIONAL = CampaignRules("receipt", category="transactional")


def facts(**kwargs: object) -> RecipientFacts:
    values: dict[str, object] = {
        "contact_id": 1,
        "email": "a@example.com",
        "consented_channels": frozenset({"email"}),
    }
    values.update(kwargs)
    return RecipientFacts(**values)  # type: ignore[arg-type]


def test_consenting_contact_gets_marketing() -> None:
    assert decide(MARKETING, facts(), channel="email", now=NOW).sends


def test_marketing_without_consent_is_skipped_as_no_consent() -> None:
    decision = decide(MARKETING, facts(consented_channels=frozenset({"x"})), channel="email", now=NOW)
    assert (decision.action, decision.reason) == ("skip", "no_consent")


def test_the_soft_opt_in_sends_to_a_customer_who_never_opted_out() -> None:
    soft = CampaignRules("apology", basis="existing_customer")
    customer = facts(consented_channels=frozenset(), customer=True)
    assert decide(soft, customer, channel="email", now=NOW).sends
    assert not decide(MARKETING, customer, channel="email", now=NOW).sends  # express consent needed there


def test_the_soft_opt_in_never_reaches_someone_who_opted_out_or_never_bought() -> None:
    soft = CampaignRules("apology", basis="existing_customer")
    withdrew = facts(consented_channels=frozenset(), withdrawn_channels=frozenset({"email"}), customer=True)
    browser = facts(consented_channels=frozenset(), customer=False)
    assert decide(soft, withdrew, channel="email", now=NOW).reason == "no_consent"
    assert decide(soft, browser, channel="email", now=NOW).reason == "no_consent"


def test_transactional_needs_no_marketing_consent() -> None:
    assert decide(TRANSACTIONAL, facts(consented_channels=frozenset()), channel="email", now=NOW).sends


def test_unsubscribed_contact_gets_transactional_but_not_marketing() -> None:
    unsubscribed = facts(suppressions=(("email", "unsubscribe"),))
    assert decide(MARKETING, unsubscribed, channel="email", now=NOW).reason == "suppressed:unsubscribe"
    assert decide(TRANSACTIONAL, unsubscribed, channel="email", now=NOW).sends


def test_unsubscribe_from_another_channel_does_not_block_email() -> None:
    assert decide(MARKETING, facts(suppressions=(("x", "unsubscribe"),)), channel="email", now=NOW).sends


def test_hard_bounce_spam_report_manual_and_forgotten_block_transactional_too() -> None:
    for reason in ("hard_bounce", "spam_report", "manual", "forgotten"):
        decision = decide(TRANSACTIONAL, facts(suppressions=(("all", reason),)), channel="email", now=NOW)
        assert (decision.action, decision.reason) == ("skip", f"suppressed:{reason}")


def test_cancelled_campaign_skips_and_paused_or_draft_holds() -> None:
    assert (
        decide(CampaignRules("c", control="cancelled"), facts(), channel="email", now=NOW).reason
        == "cancelled"
    )
    assert decide(CampaignRules("c", control="paused"), facts(), channel="email", now=NOW).action == "hold"
    assert decide(CampaignRules("c", status="draft"), facts(), channel="email", now=NOW).action == "hold"


def test_deleted_contact_is_skipped_as_no_contact() -> None:
    assert decide(MARKETING, None, channel="email", now=NOW).reason == "no_contact"


def test_outside_the_campaign_window_is_skipped() -> None:
    rules = CampaignRules("c", window=(date(2026, 12, 11), date(2026, 12, 24)), zone=TALLINN)
    assert decide(rules, facts(), channel="email", now=NOW).reason == "outside_window"
    assert decide(rules, facts(), channel="email", now=NOW + timedelta(days=1)).sends
    # Both days included, in the campaign's zone: 23:30 Tallinn on Dec 24 is still inside.
    assert decide(rules, facts(), channel="email", now=datetime(2026, 12, 24, 21, 30, tzinfo=UTC)).sends


def test_frequency_cap_counts_sends_within_the_window_only() -> None:
    rules = CampaignRules("c", frequency_cap=FrequencyCap(2, timedelta(days=7)))
    old = NOW - timedelta(days=8)
    recent = NOW - timedelta(days=1)
    assert decide(rules, facts(marketing_sends=[old, old, recent]), channel="email", now=NOW).sends
    capped = decide(rules, facts(marketing_sends=[recent, recent]), channel="email", now=NOW)
    assert capped.reason == "frequency_cap"


def test_frequency_cap_sees_sends_approved_earlier_in_the_same_batch() -> None:
    rules = CampaignRules("c", frequency_cap=FrequencyCap(1, timedelta(days=7)))
    contact = facts()
    assert decide(rules, contact, channel="email", now=NOW).sends
    note_sent(contact, rules, NOW)
    assert decide(rules, contact, channel="email", now=NOW).reason == "frequency_cap"


def test_quiet_hours_delay_until_they_end_in_the_contacts_zone() -> None:
    rules = CampaignRules("c", quiet_hours=QuietHours(time(21), time(8), "delay"))
    late = datetime(2026, 12, 10, 20, 30, tzinfo=UTC)  # 22:30 in Tallinn, 21:30 in Berlin
    decision = decide(rules, facts(zone=TALLINN), channel="email", now=late)
    assert decision.action == "defer" and decision.reason == "quiet_hours"
    assert decision.until == datetime(2026, 12, 11, 8, 0, tzinfo=TALLINN)
    assert decide(rules, facts(zone=ZoneInfo("America/New_York")), channel="email", now=late).sends


def test_quiet_hours_skip_action_skips() -> None:
    rules = CampaignRules("c", quiet_hours=QuietHours(time(21), time(8), "skip"))
    early = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)  # 06:00 in Tallinn
    assert decide(rules, facts(zone=TALLINN), channel="email", now=early).reason == "quiet_hours"


def test_recipient_facts_are_loaded_from_the_store_in_bulk(store_engine: Engine, clock: FakeClock) -> None:
    now = clock.now()
    consenting = add_contact(store_engine, "Ana@Example.com", now=now)
    silent = add_contact(store_engine, "ben@example.com", now=now, consent=())
    forgotten = add_contact(store_engine, "cleo@example.com", now=now)
    add_suppression(store_engine, "ben@example.com", "unsubscribe", now=now, channel="email")
    add_suppression(store_engine, email_digest("cleo@example.com"), "forgotten", now=now)
    add_delivery(store_engine, consenting, now=now, state="sent", sent_at=now - timedelta(days=2))
    with store_engine.connect() as conn:
        found = load_recipient_facts(
            conn, [consenting, silent, forgotten, 999], now=now, cap_lookback=timedelta(days=7)
        )
    assert sorted(found) == [consenting, silent, forgotten]
    assert found[consenting].consented_channels == {"email"} and len(found[consenting].marketing_sends) == 1
    assert found[silent].suppressions == (("email", "unsubscribe"),)
    assert decide(TRANSACTIONAL, found[forgotten], channel="email", now=now).reason == "suppressed:forgotten"
