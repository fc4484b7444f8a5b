"""Stable A/B assignment: the same contact always gets the same variant of a campaign.

The planner assigns variants inside one ``INSERT … SELECT`` (no Python loop over the
audience), and the flow stepper assigns them one contact at a time in Python. Both must
agree, so the hash is plain integer arithmetic that SQLite and PostgreSQL evaluate exactly
like Python does: two rounds of a multiply-add modulo a prime below 2**31, so every
intermediate product stays below 2**62 and never overflows a 64-bit integer.

Examples:
    >>> bucket(42, "holiday-greetings") == bucket(42, "holiday-greetings")
    True
    >>> 0 <= bucket(42, "holiday-greetings") < BUCKETS
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, case, cast, literal
from sqlalchemy.sql.elements import ColumnElement

PRIME = 2_147_483_629  # the largest prime below 2**31
MULTIPLIER_1 = 1_103_515_245
MULTIPLIER_2 = 1_664_525_113
BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an A/B step: a label recorded in ``delivery.variant`` and its template."""

    label: str
    template: str
    weight: float


def _salts(campaign_id: str) -> tuple[int, int]:
    digest = hashlib.sha256(campaign_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % PRIME, int.from_bytes(digest[8:16], "big") % PRIME


def bucket(contact_id: int, campaign_id: str) -> int:
    """The contact's bucket in ``[0, BUCKETS)`` for this campaign; mirrored by :func:`bucket_sql`."""
    salt_1, salt_2 = _salts(campaign_id)
    first = (contact_id % PRIME * MULTIPLIER_1 + salt_1) % PRIME
    second = (first * MULTIPLIER_2 + salt_2) % PRIME
    return second % BUCKETS


def bucket_sql(contact_id: ColumnElement[int], campaign_id: str) -> ColumnElement[int]:
    """The same arithmetic as :func:`bucket`, as a SQL expression (64-bit on both dialects)."""
    salt_1, salt_2 = _salts(campaign_id)

    def big(value: int) -> ColumnElement[int]:
        return literal(value, BigInteger)

    first = (cast(contact_id, BigInteger) % big(PRIME) * big(MULTIPLIER_1) + big(salt_1)) % big(PRIME)
    second = (first * big(MULTIPLIER_2) + big(salt_2)) % big(PRIME)
    return second % big(BUCKETS)


def thresholds(variants: Sequence[Variant]) -> list[int]:
    """Upper bucket bounds per variant, from the weights (the last one always ends at BUCKETS)."""
    if not variants:
        raise ValueError("an A/B step needs at least one variant")
    if any(v.weight <= 0 for v in variants):
        raise ValueError("variant weights must be positive")
    total = sum(v.weight for v in variants)
    bounds: list[int] = []
    running = 0.0
    for variant in variants:
        running += variant.weight
        bounds.append(round(running / total * BUCKETS))
    bounds[-1] = BUCKETS
    return bounds


def assign(contact_id: int, campaign_id: str, variants: Sequence[Variant]) -> Variant:
    """The variant this contact gets in this campaign; the flow stepper calls this."""
    value = bucket(contact_id, campaign_id)
    for variant, bound in zip(variants, thresholds(variants), strict=True):
        if value < bound:
            return variant
    return variants[-1]  # unreachable: the last bound is BUCKETS


def choose_sql(
    contact_id: ColumnElement[int], campaign_id: str, variants: Sequence[Variant], attribute: str
) -> ColumnElement[str]:
    """A CASE picking ``attribute`` (``label`` or ``template``) of the assigned variant, in SQL."""
    bounds = thresholds(variants)
    if len(variants) == 1:
        return literal(getattr(variants[0], attribute))
    value = bucket_sql(contact_id, campaign_id)
    pairs = zip(variants[:-1], bounds[:-1], strict=True)
    whens = [(value < bound, literal(getattr(variant, attribute))) for variant, bound in pairs]
    return case(*whens, else_=literal(getattr(variants[-1], attribute)))
