"""The campaign language of tests and holdouts, the statistics behind verdicts, and simulated engagement."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy import stats as reference
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from test_planner_support import add_contacts
from workspace_support import make_workspace

from engine.demo.engagement import DEMO_ENGAGEMENT, EngagementRates
from engine.runtime.significance import Moments, mean_ratio, proportion_ratio, two_proportion, welch
from engine.simulation.engagement import EngagementModel
from engine.store.models import Delivery, DeliveryEvent, ShopOrder
from engine.workspace.loader import load_workspace

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
EVENT = DeliveryEvent.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]

TESTED = """\
name: Test
audience: {segment: holiday-shoppers}
trigger:
  at: 2026-12-14T10:00
steps:
  - id: greeting
    send:
      channel: email
      variants:
        - {template: holiday-greeting, weight: 50}
        - {template: holiday-greeting-b, weight: 50}
      test: {share: 20%, decide_after: 4h, by: clicks}
"""


def problems(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    root = make_workspace(tmp_path / "shop")
    (root / "campaigns" / "a.yaml").write_text(text)
    return [(p.location.line, p.message) for p in load_workspace(root).problems]


def test_a_test_and_a_holdout_as_written_in_the_issue_validate(tmp_path: Path) -> None:
    assert problems(tmp_path, TESTED + "holdout: 5%\n") == []


def test_a_test_without_two_variants_is_an_error_at_its_line(tmp_path: Path) -> None:
    text = TESTED.replace("        - {template: holiday-greeting-b, weight: 50}\n", "")
    [(line, message)] = problems(tmp_path, text)
    assert line == 11 and "at least two" in message


def test_a_test_share_must_be_a_percentage_between_0_and_100(tmp_path: Path) -> None:
    for share in ("0%", "100%", "0.2", "twenty"):
        [(line, message)] = problems(tmp_path, TESTED.replace("share: 20%", f"share: {share}"))
        assert line == 12 and "percentage" in message, (share, message)
    assert problems(tmp_path, TESTED.replace("share: 20%", "share: 12.5%")) == []


def test_a_test_metric_outside_the_three_is_an_error(tmp_path: Path) -> None:
    [(line, message)] = problems(tmp_path, TESTED.replace("by: clicks", "by: opens"))
    assert line == 12 and "clicks" in message and "revenue" in message


def test_a_holdout_must_stay_below_half_and_needs_an_audience(tmp_path: Path) -> None:
    [(line, message)] = problems(tmp_path, TESTED + "holdout: 50%\n")
    assert line == 13 and "below 50%" in message
    broadcast = """\
name: Countdown
trigger: {at: 2026-12-14T10:00}
holdout: 5%
steps:
  - post: {channel: x, template: shipping-countdown}
"""
    [(line, message)] = problems(tmp_path, broadcast)
    assert line == 3 and "audience" in message


def test_two_proportion_z_matches_the_textbook_value() -> None:
    # 60/400 against 40/400: pooled p = 0.125, z = 0.05 / sqrt(0.125 * 0.875 * 2/400) = 2.138
    p = two_proportion(60, 400, 40, 400)
    assert p is not None and abs(p - (1 - reference.norm.cdf(2.13809))) < 1e-4
    assert two_proportion(5, 0, 1, 10) is None
    assert two_proportion(0, 100, 0, 100) == 0.5


def test_welch_matches_scipys_one_sided_t_test() -> None:
    draw = random.Random(7)
    first = [draw.expovariate(1 / 30) for _ in range(80)]
    second = [draw.expovariate(1 / 22) for _ in range(120)]
    p = welch(moments(first), moments(second))
    expected = reference.ttest_ind(first, second, equal_var=False, alternative="greater").pvalue
    assert p is not None and abs(p - expected) < 1e-9


def moments(values: list[float]) -> Moments:
    return Moments(len(values), sum(values), sum(v * v for v in values))


def test_ratio_intervals_are_computed_on_the_log_scale() -> None:
    rate = proportion_ratio(200, 1000, 10, 100)
    assert rate is not None and abs(rate.lift - 1.0) < 1e-12
    spread = math.sqrt(0.8 / 200 + 0.9 / 10)
    assert abs(rate.low - (2 * math.exp(-1.959964 * spread) - 1)) < 1e-5
    assert abs(rate.high - (2 * math.exp(1.959964 * spread) - 1)) < 1e-5
    assert proportion_ratio(5, 100, 0, 100) is None
    assert mean_ratio(moments([10.0, 30.0]), moments([0.0, 0.0, 0.0])) is None  # the holdout spent nothing
    revenue = mean_ratio(moments([10.0, 30.0, 20.0]), moments([5.0, 15.0, 10.0]))
    assert revenue is not None and abs(revenue.lift - 1.0) < 1e-12 and revenue.low > -1


@pytest.fixture
def sent(sqlite_engine: Engine) -> Engine:
    add_contacts(sqlite_engine, [{"id": i, "email": f"c{i}@example.com"} for i in range(1, 2001)])
    at = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    with sqlite_engine.begin() as conn:
        conn.execute(
            insert(DELIVERY),
            [
                {
                    "idempotency_key": f"k{i}",
                    "campaign_id": "greetings",
                    "step_id": "greeting",
                    "contact_id": i,
                    "template": "holiday-greeting-b" if i % 2 else "holiday-greeting",
                    "occurrence": "o",
                    "scheduled_for": at,
                    "state": "sent",
                    "sent_at": at,
                    "created_at": at,
                    "context": {},
                }
                for i in range(1, 2001)
            ],
        )
    return sqlite_engine


def draws(engine: Engine) -> tuple[list[tuple[int, datetime]], list[tuple[int, datetime, str]]]:
    with engine.connect() as conn:
        clicks = conn.execute(
            select(EVENT.c.delivery_id, EVENT.c.occurred_at).order_by(EVENT.c.delivery_id)
        ).all()
        orders = conn.execute(
            select(ORDER.c.contact_id, ORDER.c.placed_at, ORDER.c.currency).order_by(ORDER.c.contact_id)
        ).all()
    return [tuple(c) for c in clicks], [tuple(o) for o in orders]  # type: ignore[misc]


def test_simulated_clicks_follow_each_templates_rate_and_come_after_the_send(sent: Engine) -> None:
    rates = EngagementRates(click_rate=0.05, order_per_click=0.5).with_template("holiday-greeting-b", 4.0)
    start = datetime(2026, 12, 14, 7, 0, tzinfo=UTC)
    model = EngagementModel(sent, rates, seed=1, since=start)
    added = model.after_dispatch(start + timedelta(hours=2))
    assert added.messages == 2000 and model.after_dispatch(start + timedelta(hours=3)).messages == 0
    clicks, orders = draws(sent)
    b = sum(1 for delivery_id, _ in clicks if delivery_id % 2)
    a = len(clicks) - b
    assert 140 < b < 260 and 20 < a < 85  # 20 % and 5 % of 1,000 each
    assert all(moment > datetime(2026, 12, 14, 8, 0, tzinfo=UTC) for _, moment in clicks)
    assert 0.35 < len(orders) / len(clicks) < 0.65 and {currency for *_, currency in orders} == {"EUR"}
    with sent.connect() as conn:
        assert set(conn.execute(select(EVENT.c.type)).scalars()) == {"click"}


def test_the_same_seed_draws_the_same_season(sent: Engine, tmp_path: Path) -> None:
    start = datetime(2026, 12, 14, 7, 0, tzinfo=UTC)
    EngagementModel(sent, DEMO_ENGAGEMENT, seed=3, since=start).after_dispatch(start + timedelta(hours=2))
    first = draws(sent)
    with sent.begin() as conn:
        conn.execute(EVENT.delete())
        conn.execute(ORDER.delete())
    EngagementModel(sent, DEMO_ENGAGEMENT, seed=3, since=start).after_dispatch(start + timedelta(hours=2))
    assert draws(sent) == first and first[0]
