"""No silent outcomes: a flow that ends on an expression error, or an event its trigger's ``where``
cannot be evaluated on, is a named outcome with the expression and its file and line — counted by
``stats``, ``plan`` and the season report, never only a log line.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact
from test_dispatch_support import campaign, workspace
from test_flows import SETTINGS, add_event, enrol, enrolment

from engine.clock import FakeClock
from engine.feedback.stats import campaign_stats
from engine.runtime.dry_run import dry_run
from engine.runtime.enrolment import enrol_for_events
from engine.runtime.flows import advance_due
from engine.runtime.occurrences import Occurrence
from engine.store.models import Enrolment
from engine.workspace.models import CampaignSource

ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
CONDITION = "order.total > 100"  # the contact has no order: None has no attribute total


def flow_with_a_condition() -> object:
    flow = campaign(
        "spend-based",
        trigger={"event": {"type": "gift_card.redeemed"}},
        steps=[
            {"if": CONDITION, "then": [{"id": "big", "send": {"template": "greeting"}}], "else": ["exit"]},
        ],
    )
    flow.attach_source(CampaignSource(Path("campaigns/spend-based.yaml"), lambda loc: _line_of(loc)))
    return flow


def _line_of(loc: tuple[str | int, ...]) -> object:
    from engine.errors import SourceLocation

    return SourceLocation("campaigns/spend-based.yaml", 12 if loc[:1] == ("steps",) else 7, 5)


def test_a_flow_condition_that_fails_ends_the_flow_with_its_expression_and_line(
    store_engine: Engine, clock: FakeClock
) -> None:
    flow = flow_with_a_condition()
    contact = add_contact(store_engine, "no-order@example.com", now=clock.now())
    row = enrol(store_engine, contact, clock.now(), campaign_id="spend-based")

    stats = advance_due(store_engine, workspace(flow), clock, SETTINGS)  # type: ignore[arg-type]

    assert stats.exited == 1 and stats.deliveries == 0
    ended = enrolment(store_engine, row)
    assert ended.state == "exited"
    assert ended.end_reason.startswith("expression_error: ")
    assert f'in "{CONDITION}" (campaigns/spend-based.yaml:12)' in ended.end_reason

    report = campaign_stats(store_engine, window_days=7, campaign_id="spend-based")
    assert report.rows[0].exits == {"expression_error": 1}
    with store_engine.connect() as conn:
        once = Occurrence("once", "event", clock.now())
        planned = dry_run(conn, workspace(flow), flow, once, settings=SETTINGS, now=clock.now())  # type: ignore[arg-type]
    assert planned.exits == {"expression_error": 1}
    assert CONDITION in planned.exit_examples[0]


def test_an_event_the_trigger_where_fails_on_is_recorded_not_only_logged(
    store_engine: Engine, clock: FakeClock
) -> None:
    watched = campaign(
        "big-spenders",
        trigger={"event": {"type": "order.placed", "where": "event.data.total * 'x' > 1"}},
        steps=[{"id": "thanks", "send": {"template": "greeting"}}],
    )
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    event = add_event(store_engine, contact, "order.placed", clock.now() - timedelta(minutes=1))

    made = enrol_for_events(store_engine, workspace(watched), [event], clock, SETTINGS)

    assert made.created == 0 and made.expression_errors["big-spenders"] == 1
    with store_engine.connect() as conn:
        (row,) = conn.execute(select(ENROLMENT).where(ENROLMENT.c.campaign_id == "big-spenders")).all()
    assert row.state == "exited" and row.end_reason.startswith("expression_error: ")
    assert "event.data.total * 'x' > 1" in row.end_reason
    report = campaign_stats(store_engine, window_days=7, campaign_id="big-spenders")
    assert [row.exits for row in report.rows] == [{"expression_error": 1}]
