"""Campaign expressions: checked at load time, evaluated over the template context."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from engine.workspace.expressions import ExpressionError, check_expression, evaluate


def test_expression_over_the_context_evaluates_to_a_truth_value() -> None:
    assert evaluate("gift_card.balance > 0", {"gift_card": {"balance": Decimal("25.00")}}) is True
    assert evaluate("contact.orders_count == 0", {"contact": {"orders_count": 2}}) is False


def test_absent_optional_names_are_none() -> None:
    assert evaluate("gift_card and gift_card.balance > 0", {}) is False


def test_days_until_counts_whole_days_from_now() -> None:
    context = {"now": datetime(2026, 12, 15, 9, 0, tzinfo=UTC), "cutoff": {"order_by": date(2026, 12, 18)}}
    assert evaluate("days_until(cutoff.order_by) == 3", context) is True


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("gift_card.balance >", "is not valid"),
        ("giftcard.balance > 0", "did you mean 'gift_card'?"),
        ("contact.email | nosuchfilter", "No filter named"),
        ("1 }}{{ 2", "is not valid"),
        ("   ", "got nothing"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(source: str, text: str) -> None:
    with pytest.raises(ExpressionError, match=text):
        check_expression(source)


def test_the_sandbox_refuses_unsafe_attribute_access() -> None:
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        evaluate("contact.__class__.__mro__", {"contact": object()})
