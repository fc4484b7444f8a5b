"""Loading whole workspaces: all problems collected, references checked, flows walkable, hashes stable."""

from __future__ import annotations

from pathlib import Path

import pytest
from workspace_support import VALID_CAMPAIGN, make_workspace

from engine.workspace.loader import load_campaign_file, load_workspace
from engine.workspace.models import IfStep, StepPathError, WaitForEvent, WaitUntil

REPO = Path(__file__).resolve().parents[1]

FLOW = """\
name: Gift card follow-up
category: marketing
trigger:
  event: {type: gift_card.redeemed, where: "contact.orders_count == 0", once_per_contact: true}
goal: {event: order.placed}
steps:
  - id: welcome
    send: {channel: email, template: shipping-reminder}
  - wait: 2d
  - if: "gift_card.balance > 0"
    then:
      - coupon: {id: first-order, percent: 10, expires_in: 14d, prefix: HELLO}
      - id: ideas
        send:
          channel: email
          variants:
            - {template: holiday-greeting, weight: 50}
            - {template: holiday-greeting-b, weight: 50}
    else:
      - exit
  - wait: {for_event: order.placed, timeout: 7d}
  - wait: {duration: 1d, until_time: "10:00"}
  - id: balance
    send: {channel: email, template: shipping-reminder}
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "shop")


def write(workspace: Path, name: str, text: str) -> Path:
    path = workspace / "campaigns" / name
    path.write_text(text)
    return path


def test_shipped_workspace_validates_without_problems() -> None:
    result = load_workspace(REPO, default_timezone="UTC")
    assert [str(p) for p in result.problems] == []
    # the season, five status messages about returns and claims, a gift card's delivery and its nudge
    assert len(result.workspace.campaigns) == 17
    assert set(result.workspace.segments) == {
        "holiday-shoppers",
        "promotable",
        "consenting-customers",
        "gift-buyers",
        "problem-orders",
        "vip",
    }


def test_problems_of_every_file_are_reported_together(workspace: Path) -> None:
    write(workspace, "one.yaml", VALID_CAMPAIGN.replace("name: Test", "name: [x]"))
    write(workspace, "two.yaml", VALID_CAMPAIGN.replace("shipping-reminder", "nope"))
    (workspace / "schedules" / "more.yaml").write_text("dates:\n  christmas: 12-25\n")
    result = load_workspace(workspace)
    files = sorted({Path(p.location.path).name for p in result.problems})
    assert files == ["one.yaml", "season.yaml", "two.yaml"]
    assert not result.ok


def test_campaign_id_defaults_to_the_file_name_and_zone_to_the_setting(workspace: Path) -> None:
    path = write(workspace, "holiday.yaml", VALID_CAMPAIGN)
    campaign, problems = load_campaign_file(path, default_timezone="Europe/Tallinn")
    assert problems == []
    assert campaign is not None
    assert (campaign.key, campaign.timezone) == ("holiday", "Europe/Tallinn")


def test_two_campaigns_with_one_id_are_an_error_at_the_second_id(workspace: Path) -> None:
    write(workspace, "a.yaml", VALID_CAMPAIGN)
    write(workspace, "b.yaml", "id: a\n" + VALID_CAMPAIGN)
    result = load_workspace(workspace)
    assert [(Path(p.location.path).name, p.location.line) for p in result.problems] == [("b.yaml", 1)]
    assert "already used by" in result.problems[0].message


def test_misspelt_key_suggests_the_right_one(workspace: Path) -> None:
    write(
        workspace,
        "a.yaml",
        VALID_CAMPAIGN + "limits:\n  frequency_cap: {max: 3, per: 7d}\n  skip_public_holiday: true\n",
    )
    [problem] = load_workspace(workspace).problems
    assert problem.location.line == 9
    assert "did you mean 'skip_public_holidays'?" in problem.message


def test_unknown_template_segment_and_date_suggest_close_names(workspace: Path) -> None:
    write(
        workspace,
        "a.yaml",
        "name: T\naudience: {segment: holiday-shopper}\ntrigger:\n  calendar: {date: christmass}\n"
        "steps:\n  - send: {template: holiday-greetin}\n",
    )
    messages = [p.message for p in load_workspace(workspace).problems]
    assert any("did you mean 'holiday-shoppers'?" in m for m in messages)
    assert any("did you mean 'christmas'?" in m for m in messages)
    assert any("did you mean 'holiday-greeting'?" in m for m in messages)


def test_event_campaign_without_audience_is_per_contact_not_a_broadcast(workspace: Path) -> None:
    write(workspace, "flow.yaml", FLOW)
    result = load_workspace(workspace)
    assert result.problems == []
    campaign = result.workspace.campaigns["flow"]
    assert not campaign.is_broadcast
    assert campaign.trigger.kind == "event"


def test_flow_steps_get_stable_automatic_ids_from_their_position(workspace: Path) -> None:
    campaign, _ = load_campaign_file(write(workspace, "flow.yaml", FLOW))
    assert campaign is not None
    ids = [(s.path, s.step_id) for s in campaign.iter_steps()]
    assert ids == [
        ("0", "welcome"),
        ("1", "s1"),
        ("2", "s2"),
        ("2.then.0", "s2.then.0"),
        ("2.then.1", "ideas"),
        ("2.else.0", "s2.else.0"),
        ("3", "s3"),
        ("4", "s4"),
        ("5", "balance"),
    ]
    again, _ = load_campaign_file(write(workspace, "flow.yaml", FLOW))
    assert again is not None
    assert [s.step_id for s in again.iter_steps()] == [s.step_id for s in campaign.iter_steps()]


def test_stepping_through_a_flow_follows_branches_and_leaves_them(workspace: Path) -> None:
    campaign, _ = load_campaign_file(write(workspace, "flow.yaml", FLOW))
    assert campaign is not None
    assert isinstance(campaign.step_at("2"), IfStep)
    assert campaign.branch_path("2", True) == "2.then.0"
    assert campaign.branch_path("2", False) == "2.else.0"
    assert campaign.next_path("2.then.0") == "2.then.1"
    assert campaign.next_path("2.then.1") == "3"
    assert campaign.next_path("5") is None
    assert isinstance(campaign.step_at("3").spec, WaitForEvent)  # type: ignore[union-attr]
    assert isinstance(campaign.step_at("1").spec, WaitUntil)  # type: ignore[union-attr]
    with pytest.raises(StepPathError):
        campaign.step_at("9")
    with pytest.raises(StepPathError):
        campaign.step_at("1.then.0")


def test_step_source_points_at_the_step_line(workspace: Path) -> None:
    campaign, _ = load_campaign_file(write(workspace, "flow.yaml", FLOW))
    assert campaign is not None
    assert campaign.source.step("2.then.1").line == 13
    assert campaign.source.step("5").line == 23


def test_definition_hash_ignores_formatting_but_not_meaning(workspace: Path) -> None:
    block = VALID_CAMPAIGN
    flow = (
        "# a comment\nsteps: [{send: {template: shipping-reminder, channel: email}}]\n"
        "trigger: {at: '2026-12-14T10:00'}\naudience: {segment: holiday-shoppers}\nname: 'Test'\n"
    )
    first, _ = load_campaign_file(write(workspace, "c.yaml", block))
    second, _ = load_campaign_file(write(workspace, "c.yaml", flow))
    changed, _ = load_campaign_file(write(workspace, "c.yaml", block.replace("10:00", "11:00")))
    assert first is not None and second is not None and changed is not None
    assert first.definition_hash() == second.definition_hash()
    assert first.definition_hash() != changed.definition_hash()
    assert len(first.definition_hash()) == 64


def test_a_second_cutoff_row_for_the_same_country_and_method_is_an_error(workspace: Path) -> None:
    schedule = workspace / "schedules" / "season.yaml"
    text = schedule.read_text().replace(
        "  default:",
        '    - {country: EE, method: express, carrier: Omniva, order_by: "2026-12-20 12:00", '
        "timezone: Europe/Tallinn}\n  default:",
    )
    schedule.write_text(text)
    [problem] = load_workspace(workspace).problems
    assert problem.location.line == 13
    assert "a second express cutoff for EE" in problem.message
