"""The outbox's idempotency keys: the planner's SQL form and the flow stepper's Python form agree."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import literal, select
from sqlalchemy.engine import Engine

from engine.runtime.keys import delivery_key, delivery_key_sql, message_token_sql, new_message_token

NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)
OCCURRENCES = st.sampled_from(
    [
        "2026-12-14T10:00",
        "shipping_cutoff-7d@2026-12-24",
        "christmas-7d@2026-12-18",
        "manual-2026-12-05",
        "1842",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(campaign=NAMES, step=NAMES, contact=st.integers(1, 10**9), occurrence=OCCURRENCES)
def test_a_key_written_in_sql_equals_the_key_written_in_python(
    sqlite_engine: Engine, campaign: str, step: str, contact: int, occurrence: str
) -> None:
    expression = delivery_key_sql(campaign, step, literal(contact), occurrence)
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(expression)).scalar_one() == delivery_key(
            campaign, step, contact, occurrence
        )


@pytest.mark.postgres
def test_postgres_writes_the_same_key_as_python(pg_engine: Engine) -> None:
    expression = delivery_key_sql(
        "shipping-deadlines", "reminder", literal(42), "shipping_cutoff-7d@2026-12-24"
    )
    with pg_engine.connect() as conn:
        assert (
            conn.execute(select(expression)).scalar_one()
            == "shipping-deadlines:reminder:42:shipping_cutoff-7d@2026-12-24"
        )


def test_every_planned_row_draws_its_own_message_token(store_engine: Engine) -> None:
    with store_engine.connect() as conn:
        drawn = [conn.execute(select(message_token_sql())).scalar_one() for _ in range(50)]
    assert len(set(drawn)) == 50
    assert all(len(token) == 24 and int(token, 16) >= 0 for token in drawn)
    assert len(new_message_token()) == 24 and new_message_token() != new_message_token()
