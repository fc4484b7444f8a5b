"""Who of a campaign's audience is held out, who is in an A/B test's first slice, and who waits.

A campaign's ``holdout: 5%`` and a send step's ``test: {share: 20%, …}`` each set apart a stable
share of the contacts, by :func:`engine.runtime.variants.share_bucket` salted with what they split
(the campaign for a holdout, the campaign and step for a test), so the same contact is always on
the same side, in the planner's SQL (``INSERT … SELECT``), in the flow stepper's Python and in
``plan``'s counts. The holdout is decided first: a held-out contact is in no test slice and gets
no variant. Each split is independent of the variant hash, so a test slice holds the variants by
their weights (see :mod:`engine.runtime.variants`).
"""

from __future__ import annotations

from sqlalchemy import false
from sqlalchemy.sql.elements import ColumnElement

from engine.runtime import variants as ab
from engine.workspace.models import Campaign, SendStep, TestSpec

#: ``delivery.reason`` of a held-out contact's row, and ``enrolment.end_reason`` of its enrolment.
HOLDOUT = "holdout"


def send_variants(step: SendStep) -> list[ab.Variant]:
    """A send step's templates as variants (one variant, labelled "" in the outbox, when not A/B)."""
    spec = step.send
    if spec.variants:
        return [
            ab.Variant(label=v.template, template=v.template, weight=float(v.weight)) for v in spec.variants
        ]
    assert spec.template is not None
    return [ab.Variant(label="", template=spec.template, weight=1.0)]


def step_test(step: SendStep) -> TestSpec | None:
    """The step's A/B test, when it declares one (validation guarantees two variants or more)."""
    return step.send.test


def holdout_sql(campaign: Campaign, contact_id: ColumnElement[int]) -> ColumnElement[bool]:
    """Contacts the campaign keeps unsent (``false`` without a holdout)."""
    if campaign.holdout is None:
        return false()
    return ab.in_share_sql(contact_id, ab.holdout_key(campaign.key), campaign.holdout.fraction)


def in_holdout(campaign: Campaign, contact_id: int) -> bool:
    return campaign.holdout is not None and ab.in_share(
        contact_id, ab.holdout_key(campaign.key), campaign.holdout.fraction
    )


def test_slice_sql(campaign: Campaign, step: SendStep, contact_id: ColumnElement[int]) -> ColumnElement[bool]:
    """Contacts in the step's test slice (those who get the variants first)."""
    test = step_test(step)
    assert test is not None
    return ab.in_share_sql(contact_id, ab.test_key(campaign.key, step.step_id), test.share.fraction)


def in_test_slice(campaign: Campaign, step: SendStep, contact_id: int) -> bool:
    test = step_test(step)
    assert test is not None
    return ab.in_share(contact_id, ab.test_key(campaign.key, step.step_id), test.share.fraction)


__all__ = [
    "HOLDOUT",
    "holdout_sql",
    "in_holdout",
    "in_test_slice",
    "send_variants",
    "step_test",
    "test_slice_sql",
]
