"""ab_test: A/B tests of send steps, the slice sent first and the winner sent to the rest

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ab_test",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("occurrence", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("variants", engine.store.types.JSONType, nullable=False),
        sa.Column("decide_at", engine.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("winner", sa.String(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("figures", engine.store.types.JSONType, nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", engine.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "step_id", "occurrence", name="uq_ab_test"),
    )
    op.create_index("ix_ab_test_due", "ab_test", ["status", "decide_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ab_test_due", table_name="ab_test")
    op.drop_table("ab_test")
