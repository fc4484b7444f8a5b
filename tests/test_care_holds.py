"""No promotions while a return or claim is open, none on a left topic, none during a pause.

The rules are the policy gate's (pure, tested first); what counts as open is read from the
store's events in bulk (``load_recipient_facts``), and the shipped campaigns are sent through
the real dispatcher to show the named skips on the outbox rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from care_support import (
    Shop,
    care_settings,
    customer,
    open_shop,
    outbox,
    planned_for,
    post_events,
    shop_event,
)
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.runtime.policy import (
    CampaignRules,
    RecipientFacts,
    campaign_rules,
    decide,
    load_recipient_facts,
    reason_group,
)
from engine.store.models import ShopOrder, Snooze, TopicOptOut
from engine.workspace.models import Campaign

NOW = datetime(2026, 12, 28, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PROMOTION = CampaignRules("win-back", holds=frozenset({"return_open", "claim_open"}), topic="offers")
RECEIPT = CampaignRules("claim-opened", category="transactional")


def facts(**changes: Any) -> RecipientFacts:
    return replace(RecipientFacts(1, "ann@example.com", consented_channels=frozenset({"email"})), **changes)


# --- the rules ----------------------------------------------------------------------------------


def test_a_promotion_skips_a_contact_whose_claim_or_return_is_open_and_names_which() -> None:
    claim = decide(PROMOTION, facts(open_cases=frozenset({"claim_open"})), channel="email", now=NOW)
    both = decide(
        PROMOTION, facts(open_cases=frozenset({"claim_open", "return_open"})), channel="email", now=NOW
    )
    assert (claim.action, claim.reason) == ("skip", "held:claim_open")
    assert (both.action, both.reason) == ("skip", "held:return_open")
    assert decide(PROMOTION, facts(), channel="email", now=NOW).sends
    assert reason_group("held:claim_open") == "held:claim_open"  # reports keep which case held it
    assert reason_group("suppressed:unsubscribe") == "suppressed"


def test_a_campaign_holds_only_for_what_it_lists() -> None:
    claims_only = replace(PROMOTION, holds=frozenset({"claim_open"}))
    assert decide(claims_only, facts(open_cases=frozenset({"return_open"})), channel="email", now=NOW).sends
    assert not decide(
        claims_only, facts(open_cases=frozenset({"claim_open"})), channel="email", now=NOW
    ).sends


def test_messages_about_the_customers_own_orders_are_never_held_paused_or_left() -> None:
    everything = facts(
        open_cases=frozenset({"claim_open", "return_open"}),
        left_topics=frozenset({"offers"}),
        snoozed_until=NOW + DAY,
    )
    assert decide(replace(RECEIPT, topic="offers"), everything, channel="email", now=NOW).sends


def test_a_left_topic_stops_that_topics_promotions_only() -> None:
    left = facts(left_topics=frozenset({"offers"}))
    decision = decide(PROMOTION, left, channel="email", now=NOW)
    assert (decision.action, decision.reason) == ("skip", "topic_opt_out:offers")
    assert decide(replace(PROMOTION, topic="reminders"), left, channel="email", now=NOW).sends


def test_a_pause_skips_promotions_until_it_ends_by_itself() -> None:
    paused = facts(snoozed_until=NOW + DAY)
    decision = decide(PROMOTION, paused, channel="email", now=NOW)
    assert (decision.action, decision.reason) == ("skip", "snoozed")
    assert decide(PROMOTION, paused, channel="email", now=NOW + DAY).sends


def test_the_hold_comes_from_the_campaign_else_the_setting(tmp_path: Path) -> None:
    def shipped_like(limits: dict[str, Any], category: str = "marketing") -> Campaign:
        return Campaign.model_validate(
            {
                "id": "promo",
                "name": "Promo",
                "category": category,
                "audience": {"where": [{"consent": "email"}]},
                "trigger": {"at": "2026-12-01T10:00"},
                "steps": [{"send": {"template": "greeting"}}],
                "limits": limits,
            }
        )

    default = care_settings(tmp_path)
    claims_only = care_settings(tmp_path, hold_marketing_while="claim_open")
    assert campaign_rules(shipped_like({}), default).holds == {"return_open", "claim_open"}
    assert campaign_rules(shipped_like({}), claims_only).holds == {"claim_open"}
    assert campaign_rules(shipped_like({"hold_marketing_while": []}), default).holds == set()
    listed = shipped_like({"hold_marketing_while": ["return_open"]})
    assert campaign_rules(listed, claims_only).holds == {"return_open"}
    assert campaign_rules(shipped_like({}, "transactional"), default).holds == set()


# --- what is open, from the store ------------------------------------------------------------------


def _order(engine: Engine, contact_id: int, external_id: str, returned_at: datetime | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ShopOrder.__table__),  # type: ignore[attr-defined]
            {
                "external_id": external_id,
                "contact_id": contact_id,
                "placed_at": NOW - timedelta(days=20),
                "total": Decimal("40"),
                "items": [],
                "status": "returned" if returned_at else "delivered",
                "returned_at": returned_at,
            },
        )


def _event(engine: Engine, kind: str, email: str, at: datetime, **data: Any) -> None:
    post_events(
        engine, [shop_event(kind, f"{kind}-{email}-{at.isoformat()}", at, {"email": email}, data)], now=at
    )


def _open(engine: Engine, contact_id: int, at: datetime, days: int = 30) -> frozenset[str]:
    with engine.connect() as conn:
        found = load_recipient_facts(
            conn,
            [contact_id],
            now=at,
            cap_lookback=None,
            holds={"return_open", "claim_open"},
            return_window=timedelta(days=days),
        )
    return found[contact_id].open_cases


def test_a_return_is_open_from_its_request_until_the_parcel_is_back(store_engine: Engine) -> None:
    ann = customer(store_engine, "ann@example.com", now=NOW)
    _order(store_engine, ann, "O-1", returned_at=NOW + 5 * DAY)
    _event(store_engine, "return.requested", "ann@example.com", NOW, order_id="O-1", reason="wrong_size")
    assert _open(store_engine, ann, NOW - DAY) == set()  # not yet asked (a simulation sees the future)
    assert _open(store_engine, ann, NOW + DAY) == {"return_open"}
    assert _open(store_engine, ann, NOW + 6 * DAY) == set()


def test_a_return_the_shop_never_completes_stops_holding_after_the_bound(store_engine: Engine) -> None:
    ann = customer(store_engine, "ann@example.com", now=NOW)
    _order(store_engine, ann, "O-2")
    _event(store_engine, "return.requested", "ann@example.com", NOW, order_id="O-2")
    assert _open(store_engine, ann, NOW + 29 * DAY) == {"return_open"}
    assert _open(store_engine, ann, NOW + 31 * DAY) == set()
    assert _open(store_engine, ann, NOW + 8 * DAY, days=7) == set()  # TIDINGS_RETURN_OPEN_DAYS=7


def test_an_exchange_is_open_until_the_new_item_ships(store_engine: Engine) -> None:
    ann = customer(store_engine, "ann@example.com", now=NOW)
    _order(store_engine, ann, "O-3")
    _event(store_engine, "exchange.requested", "ann@example.com", NOW, order_id="O-3")
    _event(store_engine, "exchange.shipped", "ann@example.com", NOW + 2 * DAY, order_id="O-3")
    assert _open(store_engine, ann, NOW + DAY) == {"return_open"}
    assert _open(store_engine, ann, NOW + 3 * DAY) == set()


def test_a_claim_is_open_until_that_claim_is_resolved_and_again_when_reopened(store_engine: Engine) -> None:
    ann = customer(store_engine, "ann@example.com", now=NOW)
    _event(store_engine, "claim.opened", "ann@example.com", NOW, claim_id="CL-1", reason="damaged")
    _event(store_engine, "claim.opened", "ann@example.com", NOW + DAY, claim_id="CL-2")
    _event(store_engine, "claim.resolved", "ann@example.com", NOW + 2 * DAY, claim_id="CL-2")
    _event(store_engine, "claim.resolved", "ann@example.com", NOW + 3 * DAY, claim_id="CL-1")
    _event(store_engine, "claim.opened", "ann@example.com", NOW + 5 * DAY, claim_id="CL-1")
    assert _open(store_engine, ann, NOW + 2 * DAY) == {"claim_open"}  # CL-2 resolved, CL-1 still open
    assert _open(store_engine, ann, NOW + 4 * DAY) == set()
    assert _open(store_engine, ann, NOW + 6 * DAY) == {"claim_open"}  # reopened


# --- through the dispatcher, with the shipped campaigns ---------------------------------------------


@pytest.fixture
def shop(store_engine: Engine, tmp_path: Path) -> Iterator[Shop]:
    opened = open_shop(store_engine, tmp_path, FakeClock(NOW))
    yield opened
    opened.close()


def test_the_win_back_skips_customers_with_open_claims_while_their_claim_messages_still_go(
    shop: Shop,
) -> None:
    waiting = customer(shop.engine, "waiting@example.com", now=NOW)
    happy = customer(shop.engine, "happy@example.com", now=NOW)
    paused = customer(shop.engine, "paused@example.com", now=NOW)
    left = customer(shop.engine, "left@example.com", now=NOW)
    opened = NOW - DAY
    _event(shop.engine, "claim.opened", "waiting@example.com", opened, claim_id="CL-9", reason="damaged")
    with shop.engine.begin() as conn:
        conn.execute(
            insert(Snooze.__table__),  # type: ignore[attr-defined]
            {"contact_id": paused, "through": (NOW + DAY).date(), "until": NOW + 2 * DAY, "created_at": NOW},
        )
        conn.execute(
            insert(TopicOptOut.__table__),  # type: ignore[attr-defined]
            {"contact_id": left, "topic": "offers", "created_at": NOW},
        )
    for contact_id in (waiting, happy, paused, left):
        planned_for(shop, contact_id, "january-win-back", "win-back")
    shop.at(NOW)  # the claim's own message is sent by its shipped campaign
    rows = {
        row.contact_id: (row.state, row.reason) for row in shop.deliveries(campaign_id="january-win-back")
    }
    assert rows == {
        happy: ("sent", None),
        waiting: ("skipped", "held:claim_open"),
        paused: ("skipped", "snoozed"),
        left: ("skipped", "topic_opt_out:offers"),
    }
    claim_mails = [m for m in outbox(shop.settings) if m.campaign == "claim-opened"]
    assert [m.to for m in claim_mails] == ["Waiting <waiting@example.com>"]
