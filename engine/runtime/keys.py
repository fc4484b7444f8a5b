"""The outbox's idempotency keys and message tokens: built here and nowhere else.

A planned message is known by ``campaign:step:contact:occurrence`` (a broadcast post by
``campaign:step:occurrence``). The planner writes keys in SQL (``INSERT … SELECT``, no contact
id travels through Python), the flow stepper in Python, one row at a time; both forms are
defined side by side so they cannot drift apart. ``tests/test_runtime_keys.py`` checks that the
SQL form equals the Python form on SQLite and PostgreSQL.

The occurrence is always the last part, so an occurrence key may itself hold ``:``. What an
occurrence key names (and that per-contact calendar keys carry their season) is
:mod:`engine.runtime.occurrences`' business.

A message token is a random hex string drawn once per outbox row when it is planned; the
channels build the Message-ID from it, so a retry of the same row carries the same Message-ID
(a recipient's client recognises the resend) while two databases — staging and production, or a
store reset — never reuse one (DESIGN "Delivery semantics"; ids are not derived from row ids).
"""

from __future__ import annotations

import secrets

from sqlalchemy import String, cast, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.type_api import TypeEngine

SEPARATOR = ":"
TOKEN_BYTES = 12


def delivery_key(campaign_id: str, step_id: str, contact_id: int, occurrence: str) -> str:
    """The key of one contact's message from one step of one occurrence."""
    return SEPARATOR.join((campaign_id, step_id, str(int(contact_id)), occurrence))


def delivery_key_sql(
    campaign_id: str, step_id: str, contact_id: ColumnElement[int], occurrence: str
) -> ColumnElement[str]:
    """:func:`delivery_key` as an SQL expression over a contact id column (``||`` on both dialects)."""
    head = literal(SEPARATOR.join((campaign_id, step_id)) + SEPARATOR, String())
    tail = literal(SEPARATOR + occurrence, String())
    return head + cast(contact_id, String()) + tail


def post_key(campaign_id: str, step_id: str, occurrence: str) -> str:
    """The key of a broadcast post: one per campaign step and occurrence."""
    return SEPARATOR.join((campaign_id, step_id, occurrence))


def new_message_token() -> str:
    """A fresh random token for one outbox row (24 hex characters)."""
    return secrets.token_hex(TOKEN_BYTES)


class _random_token(FunctionElement[str]):
    """A random hex token drawn by the database, one per row of an ``INSERT … SELECT``."""

    inherit_cache = True
    name = "random_token"
    type: TypeEngine[str] = String()


@compiles(_random_token, "sqlite")
def _random_token_sqlite(element: _random_token, compiler: object, **kw: object) -> str:
    return f"lower(hex(randomblob({TOKEN_BYTES})))"


@compiles(_random_token, "postgresql")
def _random_token_pg(element: _random_token, compiler: object, **kw: object) -> str:
    # gen_random_uuid() is built into PostgreSQL 13+ and drawn per row (not once per statement).
    return f"substr(replace(gen_random_uuid()::text, '-', ''), 1, {TOKEN_BYTES * 2})"


def message_token_sql() -> ColumnElement[str]:
    """:func:`new_message_token` drawn by the database for each planned row."""
    return func.coalesce(_random_token(), literal(""))  # coalesce keeps the label-able type


__all__ = [
    "SEPARATOR",
    "delivery_key",
    "delivery_key_sql",
    "message_token_sql",
    "new_message_token",
    "post_key",
]
