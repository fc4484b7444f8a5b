"""The care parts of the campaign language (recipient sends, date waits, topics, holds) in ``validate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import jsonschema
import pytest
from ruamel.yaml import YAML
from workspace_support import make_workspace

from engine.settings import HOLD_REASONS
from engine.workspace.loader import load_workspace
from engine.workspace.models import HoldReason, SendStep, WaitStep, WaitUntilDate
from engine.workspace.schema import json_schema

REPO = Path(__file__).resolve().parents[1]

DELIVERY = """\
name: Gift card delivery
category: transactional
trigger:
  event: {type: gift_card.purchased}
steps:
  - wait: {until_date: "event.data.send_on", until_time: "09:00"}
  - id: delivery
    send: {channel: email, template: shipping-reminder, to: recipient}
"""

PROMOTION = """\
name: Offers
topic: offers
audience: {segment: holiday-shoppers}
trigger:
  at: 2026-12-14T10:00
steps:
  - send: {channel: email, template: shipping-reminder}
limits:
  hold_marketing_while: [claim_open]
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "shop")


def problems(workspace: Path, name: str, text: str) -> list[tuple[int, str]]:
    (workspace / "campaigns" / name).write_text(text)
    return [(p.location.line, p.message) for p in load_workspace(workspace).problems]


def test_a_gift_card_delivery_flow_is_valid_and_reads_as_written(workspace: Path) -> None:
    assert problems(workspace, "delivery.yaml", DELIVERY) == []
    campaign = load_workspace(workspace).workspace.campaigns["delivery"]
    wait, send = campaign.steps
    assert isinstance(wait, WaitStep) and isinstance(wait.wait, WaitUntilDate)
    assert (wait.wait.until_date, wait.wait.until_time.isoformat()) == ("event.data.send_on", "09:00:00")
    assert isinstance(send, SendStep) and send.send.to == "recipient"
    assert campaign.next_send(wait.path) is send


def test_until_time_defaults_to_nine(workspace: Path) -> None:
    text = DELIVERY.replace(', until_time: "09:00"', "")
    assert problems(workspace, "delivery.yaml", text) == []
    wait = load_workspace(workspace).workspace.campaigns["delivery"].steps[0]
    assert isinstance(wait, WaitStep) and isinstance(wait.wait, WaitUntilDate)
    assert wait.wait.until_time.isoformat() == "09:00:00"


def test_sending_to_the_recipient_needs_a_gift_card_purchase_trigger(workspace: Path) -> None:
    text = DELIVERY.replace("gift_card.purchased", "gift_card.redeemed")
    [(line, message)] = problems(workspace, "delivery.yaml", text)
    assert line == 8  # the send's line
    assert "to: recipient" in message and "gift_card.purchased" in message


def test_an_until_date_with_an_unknown_name_is_an_error_at_its_line(workspace: Path) -> None:
    text = DELIVERY.replace("event.data.send_on", "gift.send_on")
    [(line, message)] = problems(workspace, "delivery.yaml", text)
    assert line == 6 and "unknown name 'gift'" in message


def test_an_until_date_reading_the_event_needs_an_event_trigger(workspace: Path) -> None:
    text = (
        "name: Dated\naudience: {segment: holiday-shoppers}\ntrigger:\n  at: 2026-12-14T10:00\nsteps:\n"
        '  - wait: {until_date: "event.data.send_on"}\n  - send: {template: shipping-reminder}\n'
    )
    [(line, message)] = problems(workspace, "dated.yaml", text)
    assert line == 6 and "not triggered by an event" in message


def test_an_unknown_recipient_is_refused_with_the_choices(workspace: Path) -> None:
    [(line, message)] = problems(workspace, "delivery.yaml", DELIVERY.replace("to: recipient", "to: buyer"))
    assert line == 8 and "'contact' or 'recipient'" in message


def test_topics_and_holds_belong_to_marketing(workspace: Path) -> None:
    assert problems(workspace, "offers.yaml", PROMOTION) == []
    found = problems(
        workspace, "offers.yaml", PROMOTION.replace("name: Offers", "name: Offers\ncategory: transactional")
    )
    assert [line for line, _ in found] == [3, 10]
    assert "transactional campaign has no topic" in found[0][1]
    assert "never held" in found[1][1]


def test_an_unknown_or_repeated_hold_is_an_error(workspace: Path) -> None:
    [(_, unknown)] = problems(workspace, "offers.yaml", PROMOTION.replace("[claim_open]", "[claims_open]"))
    assert "'return_open' or 'claim_open'" in unknown and "did you mean 'claim_open'?" in unknown
    [(_, twice)] = problems(
        workspace, "offers.yaml", PROMOTION.replace("[claim_open]", "[claim_open, claim_open]")
    )
    assert "listed once" in twice


def test_the_setting_and_the_campaign_language_know_the_same_holds() -> None:
    assert get_args(HoldReason) == HOLD_REASONS


def test_the_published_schema_knows_the_care_keys_and_accepts_the_shipped_campaigns() -> None:
    schema = json_schema("campaign")
    published = json.loads((REPO / "schemas" / "campaign.schema.json").read_text(encoding="utf-8"))
    assert published == json.loads(json.dumps(schema))  # schemas/ is regenerated
    validator = jsonschema.Draft202012Validator(schema)
    for name in ("gift-card-delivery", "gift-card-waiting", "holiday-greetings"):
        data = YAML(typ="safe").load((REPO / "campaigns" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert list(validator.iter_errors(data)) == []
    bad = {
        "name": "x",
        "trigger": {"event": {"type": "gift_card.purchased"}},
        "steps": [{"send": {"template": "t", "to": "x"}}],
    }
    assert list(validator.iter_errors(bad)) != []
