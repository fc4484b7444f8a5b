"""delivery.message_token, post.context: what the planner decided, written on the row

``delivery.context`` (and ``enrolment.context``) now hold the message's facts as the planner
decided them — cutoff, trigger date, occurrence moment, zone — and ``post.context`` does the same
for broadcasts, so sending never decides them again. ``delivery.message_token`` is a random token
drawn once per row: the Message-ID is built from it, stable across retries of the row and never
reused by another database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_token", sa.String(length=64), nullable=True))
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("context", engine.store.types.JSONType, nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.drop_column("context")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("message_token")
