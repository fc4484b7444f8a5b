"""lease, rate_bucket, fire_record; delivery.picked_by: scale-out that holds

* ``lease``: named leases (the planning leader, with a fencing epoch; a worker's batch in progress).
* ``rate_bucket``: token buckets shared by every process of one store.
* ``fire_record``: trigger fires written before they are planned, completed by the next leader.
* ``delivery.picked_by``: which worker batch took a row's broker message, so the sweeper
  re-publishes only rows whose message can really be lost; ``ix_delivery_unpublished`` lets
  the publisher find rows never handed to the broker without walking a published backlog, and
  ``ix_delivery_awaiting_pickup`` the sweeper rows handed over that no worker took.

Revision ID: 0005
Revises: 0008
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision: str = "0005"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, engine.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        _when("acquired_at"),
        _when("renewed_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lease_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "rate_bucket",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        _when("updated_at"),
        _when("blocked_until", nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "fire_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("occurrence", sa.String(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        _when("started_at"),
        _when("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "occurrence", name="uq_fire_record_occurrence"),
    )
    with op.batch_alter_table("fire_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fire_record_state"), ["state"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("picked_by", sa.String(), nullable=True))
        batch_op.create_index("ix_delivery_picked_by", ["picked_by"], unique=False)
        batch_op.create_index(
            "ix_delivery_unpublished",
            ["scheduled_for"],
            unique=False,
            sqlite_where=sa.text("published_at IS NULL"),
            postgresql_where=sa.text("published_at IS NULL"),
        )
        batch_op.create_index(
            "ix_delivery_awaiting_pickup",
            ["published_at"],
            unique=False,
            sqlite_where=sa.text("picked_by IS NULL AND published_at IS NOT NULL"),
            postgresql_where=sa.text("picked_by IS NULL AND published_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_awaiting_pickup")
        batch_op.drop_index("ix_delivery_unpublished")
        batch_op.drop_index("ix_delivery_picked_by")
        batch_op.drop_column("picked_by")
    with op.batch_alter_table("fire_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fire_record_state"))
    op.drop_table("fire_record")
    op.drop_table("rate_bucket")
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lease_expires_at"))
    op.drop_table("lease")
