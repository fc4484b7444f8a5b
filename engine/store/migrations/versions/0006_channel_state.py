"""channel_state: a channel suspended as a whole (a revoked key, no credits left, a daily cap)

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_state",
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("suspended_at", engine.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("suspended_until", engine.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("channel"),
    )


def downgrade() -> None:
    op.drop_table("channel_state")
