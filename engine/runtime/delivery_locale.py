"""The language an outbox row is sent in: the contact's, unless the campaign or step forces one.

``locale: ro`` on a campaign (or a send step) sends every email of it in Romanian; a list
(``locale: [ro, et]``) keeps the contact's own language when it is listed and sends the first
otherwise. The planner writes the result into ``delivery.locale`` (:func:`delivery_locale_sql`,
inside its ``INSERT … SELECT``) and the flow stepper does the same per contact
(:func:`delivery_locale`); the dispatcher renders from the row, so plan, simulate and the send
agree. Languages compare on their first part: ``ro-RO`` is listed by ``ro``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, case, func, literal, or_
from sqlalchemy.sql.elements import ColumnElement

from engine.workspace.values import normalise_locale


def language(locale: str | None) -> str | None:
    """``ro-RO`` → ``ro``."""
    code = normalise_locale(locale)
    return code.split("-", 1)[0] if code else None


def delivery_locale(contact_locale: str | None, forced: Sequence[str] | None) -> str | None:
    """The locale a message to a contact with ``contact_locale`` is sent in (see the module docstring)."""
    if not forced:
        return contact_locale
    own = language(contact_locale)
    if own is not None and own in {language(code) for code in forced}:
        return contact_locale
    return forced[0]


def delivery_locale_sql(forced: Sequence[str] | None, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """:func:`delivery_locale` as SQL over the contact's locale column."""
    if not forced:
        return column
    lowered = func.lower(column)
    listed: list[ColumnElement[bool]] = []
    for code in dict.fromkeys(language(code) for code in forced):
        if code:
            listed += [lowered == code, lowered.like(f"{code}-%"), lowered.like(f"{code}\\_%", escape="\\")]
    return case((or_(*listed), column), else_=literal(forced[0], String()))


__all__ = ["delivery_locale", "delivery_locale_sql", "language"]
