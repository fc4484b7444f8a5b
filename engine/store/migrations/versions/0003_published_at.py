"""delivery.published_at, post.published_at: when a row was last handed to the broker (scale-out)

The outbox stays the source of truth; the broker only distributes work. ``published_at``
lets the publisher hand each due row to the broker once, and lets the sweeper find rows
whose broker message was lost (published long ago, still due, never claimed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("delivery", "post"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("published_at", engine.store.types.UTCDateTime(timezone=True), nullable=True)
            )


def downgrade() -> None:
    for table in ("post", "delivery"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("published_at")
