"""coupon: who gave it, why, for which order; topic_opt_out and snooze: preferences short of leaving

``coupon`` gains ``issued_by`` (an agent: the CLI's ``--agent`` or the care API token's label),
``reason``, ``order_id`` (the shop's order id) and ``request_key`` (the care API's
``Idempotency-Key``, unique, so a retried request returns the coupon it already made).

``topic_opt_out`` holds one row per (contact, topic) the contact left on the preferences page;
``snooze`` one row per contact who paused marketing through a day (``through``), with ``until``
the first instant marketing may reach them again (the day after, 00:00 in their zone).

Revision ID: 0008
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import engine.store.types

revision: str = "0008"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("coupon", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issued_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(
            sa.Column("request_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.create_unique_constraint("uq_coupon_request_key", ["request_key"])
    op.create_table(
        "topic_opt_out",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_id", "topic", name="uq_topic_opt_out"),
    )
    op.create_index(op.f("ix_topic_opt_out_contact_id"), "topic_opt_out", ["contact_id"], unique=False)
    op.create_table(
        "snooze",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("through", sa.Date(), nullable=False),
        sa.Column("until", engine.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("contact_id"),
    )


def downgrade() -> None:
    op.drop_table("snooze")
    op.drop_index(op.f("ix_topic_opt_out_contact_id"), table_name="topic_opt_out")
    op.drop_table("topic_opt_out")
    with op.batch_alter_table("coupon", schema=None) as batch_op:
        batch_op.drop_constraint("uq_coupon_request_key", type_="unique")
        batch_op.drop_column("request_key")
        batch_op.drop_column("order_id")
        batch_op.drop_column("reason")
        batch_op.drop_column("issued_by")
