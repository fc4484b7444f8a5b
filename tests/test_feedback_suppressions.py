"""Suppression semantics, as the policy gate and the audience compiler see them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from engine.store import write_transaction
from engine.store.models import Contact, Suppression
from engine.store.suppressions import (
    add_suppression,
    blocked_reason,
    email_digest,
    list_suppressions,
    remove_suppression,
    suppressed_clause,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _contacts(engine: Engine, *emails: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(Contact.__table__),  # type: ignore[attr-defined]
            [{"email": e, "tags": [], "attributes": {}, "orders_count": 0, "total_spent": 0} for e in emails],
        )


def _audience(engine: Engine, channel: str, category: str) -> list[str]:
    table = Contact.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        query = (
            select(table.c.email)
            .where(~suppressed_clause(table.c.email, channel, category))
            .order_by("email")
        )
        return list(conn.execute(query).scalars())


def test_unsubscribe_blocks_marketing_on_its_channel_only(store_engine: Engine) -> None:
    with write_transaction(store_engine) as conn:
        add_suppression(conn, "Ann@Example.com", channel="email", reason="unsubscribe", now=NOW)
    with store_engine.connect() as conn:
        assert blocked_reason(conn, "ann@example.com", "email", "marketing") == "unsubscribe"
        assert blocked_reason(conn, "ann@example.com", "email", "transactional") is None
        assert blocked_reason(conn, "ann@example.com", "x", "marketing") is None


def test_hard_bounce_blocks_transactional_mail_too(store_engine: Engine) -> None:
    with write_transaction(store_engine) as conn:
        add_suppression(conn, "bob@example.com", channel="email", reason="hard_bounce", now=NOW)
        add_suppression(conn, "cy@example.com", channel="all", reason="manual", now=NOW)
    with store_engine.connect() as conn:
        assert blocked_reason(conn, "bob@example.com", "email", "transactional") == "hard_bounce"
        assert blocked_reason(conn, "cy@example.com", "sms", "transactional") == "manual"


def test_a_stronger_reason_replaces_a_weaker_one_and_never_the_reverse(store_engine: Engine) -> None:
    with write_transaction(store_engine) as conn:
        assert add_suppression(conn, "d@example.com", channel="email", reason="unsubscribe", now=NOW)
        assert add_suppression(conn, "d@example.com", channel="email", reason="spam_report", now=NOW)
        assert not add_suppression(conn, "d@example.com", channel="email", reason="unsubscribe", now=NOW)
        rows = list_suppressions(conn, email="d@example.com")
    assert [(r.channel, r.reason) for r in rows] == [("email", "spam_report")]


def test_sql_clause_excludes_suppressed_and_forgotten_addresses(store_engine: Engine) -> None:
    _contacts(store_engine, "ann@example.com", "bob@example.com", "gone@example.com", "ok@example.com")
    with write_transaction(store_engine) as conn:
        add_suppression(conn, "ann@example.com", channel="email", reason="unsubscribe", now=NOW)
        add_suppression(conn, "bob@example.com", channel="email", reason="hard_bounce", now=NOW)
        add_suppression(conn, "gone@example.com", channel="all", reason="forgotten", now=NOW, hashed=True)
    assert _audience(store_engine, "email", "marketing") == ["ok@example.com"]
    assert _audience(store_engine, "email", "transactional") == ["ann@example.com", "ok@example.com"]
    assert _audience(store_engine, "x", "marketing") == [
        "ann@example.com",
        "bob@example.com",
        "ok@example.com",
    ]


def test_forgotten_rows_hold_only_a_digest_yet_still_block(store_engine: Engine) -> None:
    with write_transaction(store_engine) as conn:
        add_suppression(conn, "Gone@Example.com", channel="all", reason="forgotten", now=NOW, hashed=True)
        stored = list(conn.execute(select(Suppression.__table__.c.email)).scalars())  # type: ignore[attr-defined]
        assert stored == [email_digest("gone@example.com")]
        assert blocked_reason(conn, "gone@example.com", "email", "transactional") == "forgotten"
        assert remove_suppression(conn, "gone@example.com") == 0
