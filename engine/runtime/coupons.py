"""Unique coupon codes for ``coupon`` steps and for agents' goodwill: ``PREFIX-XXXXXX``.

Codes use an alphabet without look-alikes (no 0/O, 1/I/L), drawn from ``secrets`` so
they cannot be guessed from one another. Issuing is idempotent per (campaign, coupon
step id, contact, occurrence): a flow that is re-run after a crash hands the contact
the code it already has, not a second one. A code collision (31^6 ≈ 887 million codes
per prefix) is simply drawn again.

An agent's coupon (:mod:`engine.runtime.goodwill`) is the same row with a fresh occurrence
per gift, and records who gave it, why, for which order, and the API request it answers
(:class:`Grant`); :func:`coupon_for_request` finds it again for a retried request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.engine import Connection

from engine.store.dialect import insert_for
from engine.store.models import Coupon

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
MAX_DRAWS = 20

COUPON: Table = Coupon.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Grant:
    """Who gave a coupon and why (agents' coupons; a flow's coupon has none)."""

    issued_by: str
    reason: str
    order_id: str | None = None
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    code: str
    percent: Decimal
    expires_at: datetime | None
    contact_id: int | None = None
    occurrence: str | None = None
    grant: Grant | None = None

    def as_context(self) -> dict[str, Any]:
        """The ``coupon`` template name: JSON-safe, so it can live in enrolment and delivery context."""
        return {
            "code": self.code,
            "percent": float(self.percent) if self.percent % 1 else int(self.percent),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def new_code(prefix: str) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    prefix = prefix.strip().upper()
    return f"{prefix}-{body}" if prefix else body


def issue_coupon(
    conn: Connection,
    *,
    campaign_id: str,
    coupon_id: str,
    contact_id: int,
    occurrence: str,
    percent: Decimal | float | int,
    prefix: str,
    now: datetime,
    expires_in: timedelta | None = None,
    expires_at: datetime | None = None,
    grant: Grant | None = None,
) -> IssuedCoupon:
    """The contact's code for this coupon step and occurrence: the stored one, or a new unique one.

    The expiry is ``expires_at`` when given, else ``now + expires_in`` (else none).
    """
    existing = _find(conn, campaign_id, coupon_id, contact_id, occurrence)
    if existing is not None:
        return existing
    if expires_at is None and expires_in is not None:
        expires_at = now + expires_in
    amount = Decimal(str(percent))
    recorded = (
        {
            "issued_by": grant.issued_by,
            "reason": grant.reason,
            "order_id": grant.order_id,
            "request_key": grant.request_key,
        }
        if grant is not None
        else {}
    )
    for _ in range(MAX_DRAWS):
        statement = insert_for(conn, COUPON).values(
            code=new_code(prefix),
            campaign_id=campaign_id,
            coupon_id=coupon_id,
            contact_id=contact_id,
            occurrence=occurrence,
            percent=amount,
            expires_at=expires_at,
            created_at=now,
            **recorded,
        )
        conn.execute(statement.on_conflict_do_nothing())
        issued = _find(conn, campaign_id, coupon_id, contact_id, occurrence)
        if issued is not None:
            return issued
        if grant is not None and grant.request_key is not None:
            raced = coupon_for_request(conn, grant.request_key)
            if raced is not None:
                return raced  # a concurrent request with the same key won: the caller compares them
    raise RuntimeError(f"could not draw a unique coupon code with prefix {prefix!r} in {MAX_DRAWS} tries")


def coupon_for_request(conn: Connection, request_key: str) -> IssuedCoupon | None:
    """The coupon an earlier request with this (scoped) idempotency key made, if any."""
    return _one(conn, COUPON.c.request_key == request_key)


def _find(
    conn: Connection, campaign_id: str, coupon_id: str, contact_id: int, occurrence: str
) -> IssuedCoupon | None:
    return _one(
        conn,
        COUPON.c.campaign_id == campaign_id,
        COUPON.c.coupon_id == coupon_id,
        COUPON.c.contact_id == contact_id,
        COUPON.c.occurrence == occurrence,
    )


def _one(conn: Connection, *conditions: ColumnElement[bool]) -> IssuedCoupon | None:
    row = conn.execute(select(COUPON).where(*conditions)).first()
    if row is None:
        return None
    grant = (
        Grant(row.issued_by, row.reason or "", row.order_id, row.request_key)
        if row.issued_by is not None
        else None
    )
    return IssuedCoupon(
        code=row.code,
        percent=Decimal(row.percent),
        expires_at=row.expires_at,
        contact_id=row.contact_id,
        occurrence=row.occurrence,
        grant=grant,
    )
