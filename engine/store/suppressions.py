"""Suppressions: addresses that must not be contacted, shared by every campaign.

Semantics (the policy gate, the audience compiler and ``tidings suppress`` all follow them):

* A row is ``(email, channel, reason)``. ``channel`` is a channel name (``email``, ``x``,
  ``sms``) or ``all`` for every channel.
* Reason ``unsubscribe`` blocks **marketing** on that channel only. A transactional message
  (an order receipt, "how to redeem your gift card") still goes out: the recipient asked
  to stop promotions, not to stop hearing about their own order.
* Reasons ``hard_bounce``, ``spam_report``, ``manual`` and ``forgotten`` block **everything**
  on that channel, transactional included: a hard-bounced address does not exist, mailing
  a spam reporter again hurts the sender's reputation for every customer, ``manual`` is an
  operator's decision, and ``forgotten`` is a GDPR erasure.
* Several reasons can apply to one address; the blocking one with the highest
  :data:`SEVERITY` is reported, so the outbox row names the strongest cause.

Forgotten addresses (``tidings contact forget``) are kept only as a digest: the ``email``
column holds ``sha256:`` + the hex SHA-256 of the trimmed, lower-cased address (see
:func:`email_digest`). Every check therefore matches a row whose ``email`` equals the
address **or** its digest:

* :func:`blocked_reason` computes the digest in Python;
* :func:`suppressed_clause` computes it in SQL: PostgreSQL with its built-in ``sha256``;
  SQLite with a ``tidings_sha256`` function this module registers on every SQLite
  connection checked out of any pool (a class-level pool listener installed on import),
  so the clause works on engines created before or after this module was imported.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, event, exists, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import Pool
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from engine.store.dialect import UpsertInsert, insert_for
from engine.store.models import Suppression

ALL_CHANNELS = "all"
DIGEST_PREFIX = "sha256:"


class Reason(StrEnum):
    unsubscribe = "unsubscribe"
    hard_bounce = "hard_bounce"
    spam_report = "spam_report"
    manual = "manual"
    forgotten = "forgotten"


#: Reasons that block transactional messages as well as marketing.
BLOCKS_EVERYTHING: frozenset[str] = frozenset(
    {Reason.hard_bounce, Reason.spam_report, Reason.manual, Reason.forgotten}
)
#: Which reason wins when several apply (higher is stronger).
SEVERITY: dict[str, int] = {
    Reason.unsubscribe: 1,
    Reason.manual: 2,
    Reason.hard_bounce: 3,
    Reason.spam_report: 4,
    Reason.forgotten: 5,
}


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_digest(email: str) -> str:
    """The anonymised address kept after ``forget``: ``sha256:<hex>`` of the lower-cased address."""
    return DIGEST_PREFIX + hashlib.sha256(normalise_email(email).encode("utf-8")).hexdigest()


def reasons_blocking(category: str) -> frozenset[str]:
    """The reasons that stop a message of ``category`` (``marketing`` or ``transactional``)."""
    if category == "transactional":
        return BLOCKS_EVERYTHING
    return BLOCKS_EVERYTHING | {Reason.unsubscribe.value}


def blocks(reason: str, category: str) -> bool:
    return reason in reasons_blocking(category)


def blocked_reason(conn: Connection, email: str, channel: str, category: str = "marketing") -> str | None:
    """The strongest reason that stops a ``category`` message to ``email`` on ``channel``, or None."""
    address = normalise_email(email)
    rows = conn.execute(
        select(Suppression.reason).where(  # type: ignore[call-overload]
            Suppression.email.in_([address, email_digest(address)]),  # type: ignore[attr-defined]
            Suppression.channel.in_([channel, ALL_CHANNELS]),  # type: ignore[attr-defined]
            Suppression.reason.in_(sorted(reasons_blocking(category))),  # type: ignore[attr-defined]
        )
    ).scalars()
    found = list(rows)
    if not found:
        return None
    return max(found, key=lambda reason: SEVERITY.get(reason, 0))


class sql_email_digest(FunctionElement[str]):
    """``'sha256:' || hex(sha256(lower(email)))`` in SQL, for matching forgotten (hashed) rows."""

    type = String()
    inherit_cache = True
    name = "sql_email_digest"


@compiles(sql_email_digest, "postgresql")
def _digest_pg(element: sql_email_digest, compiler: Any, **kw: Any) -> str:
    (arg,) = list(element.clauses)
    inner = f"convert_to(lower(trim({compiler.process(arg, **kw)})), 'UTF8')"
    return f"('{DIGEST_PREFIX}' || encode(sha256({inner}), 'hex'))"


@compiles(sql_email_digest)
def _digest_default(element: sql_email_digest, compiler: Any, **kw: Any) -> str:
    (arg,) = list(element.clauses)
    return f"tidings_sha256({compiler.process(arg, **kw)})"


def _sqlite_digest(value: str | None) -> str | None:
    return None if value is None else email_digest(value)


@event.listens_for(Pool, "checkout")
def _register_sqlite_digest(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if record.info.get("tidings_sha256"):
        return
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function("tidings_sha256", 1, _sqlite_digest, deterministic=True)
    record.info["tidings_sha256"] = True


def suppressed_clause(email_column: Any, channel: str, category: str = "marketing") -> ColumnElement[bool]:
    """SQL that is true when the address in ``email_column`` is suppressed for ``category`` on ``channel``.

    Embed it in an audience or policy query: ``select(Contact.id).where(~suppressed_clause(Contact.email,
    "email", "marketing"))``. Contact emails are stored lower-cased, so the plain comparison needs no
    ``lower()`` and uses the index; forgotten rows are matched by digest.
    """
    table = Suppression.__table__  # type: ignore[attr-defined]
    return exists().where(
        or_(table.c.email == email_column, table.c.email == sql_email_digest(email_column)),
        table.c.channel.in_([channel, ALL_CHANNELS]),
        table.c.reason.in_(sorted(reasons_blocking(category))),
    )


@dataclass(frozen=True, slots=True)
class SuppressionRow:
    email: str
    channel: str
    reason: str
    source: str | None
    created_at: datetime

    def as_dict(self) -> dict[str, str | None]:
        return {
            "email": self.email,
            "channel": self.channel,
            "reason": self.reason,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
        }


def _insert(conn: Connection) -> UpsertInsert:
    return insert_for(conn, Suppression.__table__)  # type: ignore[attr-defined]


def add_suppression(
    conn: Connection,
    email: str,
    *,
    channel: str,
    reason: str,
    now: datetime,
    source: str | None = None,
    hashed: bool = False,
) -> bool:
    """Suppress ``email`` on ``channel``; True when something changed.

    Idempotent: one row per (address, channel). A stronger reason replaces a weaker one
    (an unsubscribed address that then hard-bounces becomes ``hard_bounce``); a weaker
    one never downgrades a stronger one.
    """
    if reason not in SEVERITY:
        raise ValueError(f"unknown suppression reason {reason!r} (expected one of {', '.join(SEVERITY)})")
    key = email_digest(email) if hashed else normalise_email(email)
    row = {"email": key, "channel": channel, "reason": reason, "source": source, "created_at": now}
    table = Suppression.__table__  # type: ignore[attr-defined]
    inserted = conn.execute(
        _insert(conn)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["email", "channel"])
        .returning(table.c.id)
    ).first()
    if inserted is not None:
        return True
    weaker = [name for name, rank in SEVERITY.items() if rank < SEVERITY[reason]]
    upgraded = conn.execute(
        update(table)
        .where(table.c.email == key, table.c.channel == channel, table.c.reason.in_(weaker))
        .values(reason=reason, source=source, created_at=now)
    ).rowcount
    return bool(upgraded)


def remove_suppression(conn: Connection, email: str, channel: str | None = None) -> int:
    """Lift suppressions of ``email`` (on one channel, or all); returns how many rows went.

    Forgotten (hashed) rows are never lifted this way: an erased person who comes back
    signs up again, and a fresh consent grant is what lets them be mailed.
    """
    table = Suppression.__table__  # type: ignore[attr-defined]
    statement = delete(table).where(table.c.email == normalise_email(email))
    if channel is not None:
        statement = statement.where(table.c.channel == channel)
    return int(conn.execute(statement).rowcount or 0)


def list_suppressions(
    conn: Connection, *, email: str | None = None, reasons: Iterable[str] | None = None
) -> list[SuppressionRow]:
    table = Suppression.__table__  # type: ignore[attr-defined]
    statement = select(table.c.email, table.c.channel, table.c.reason, table.c.source, table.c.created_at)
    if email is not None:
        statement = statement.where(table.c.email.in_([normalise_email(email), email_digest(email)]))
    if reasons is not None:
        statement = statement.where(table.c.reason.in_(list(reasons)))
    statement = statement.order_by(table.c.created_at, table.c.email, table.c.channel)
    return [SuppressionRow(*row) for row in conn.execute(statement)]


__all__ = [
    "ALL_CHANNELS",
    "BLOCKS_EVERYTHING",
    "Reason",
    "SuppressionRow",
    "add_suppression",
    "blocked_reason",
    "blocks",
    "email_digest",
    "list_suppressions",
    "reasons_blocking",
    "remove_suppression",
    "suppressed_clause",
]
