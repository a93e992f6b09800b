"""Staged rollouts: the rollout, its members (with their previous release), its events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:21:27.983746
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollout",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("release_digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("population", sa.BigInteger(), nullable=False),
        sa.Column("wave", sa.BigInteger(), nullable=False),
        sa.Column("wave_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_digest"], ["release.digest"], name=op.f("fk_rollout_release_digest_release")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout")),
    )
    op.create_index(op.f("ix_rollout_status"), "rollout", ["status"], unique=False)

    op.create_table(
        "rollout_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("wave", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollout.id"], name=op.f("fk_rollout_event_rollout_id_rollout")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_event")),
    )
    op.create_index(
        op.f("ix_rollout_event_rollout_id_id"), "rollout_event", ["rollout_id", "id"], unique=False
    )

    op.create_table(
        "rollout_member",
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("rank", sa.BigInteger(), nullable=False),
        sa.Column("previous_release", sa.String(length=64), nullable=True),
        sa.Column("wave", sa.BigInteger(), nullable=True),
        sa.Column("directed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rollback", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_rollout_member_device_id_device")
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollout.id"], name=op.f("fk_rollout_member_rollout_id_rollout")
        ),
        sa.PrimaryKeyConstraint("rollout_id", "device_id", name=op.f("pk_rollout_member")),
    )
    op.create_index(
        op.f("ix_rollout_member_device_id"), "rollout_member", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_rollout_member_rollout_id_rank"),
        "rollout_member",
        ["rollout_id", "rank"],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes with it.
    op.drop_table("rollout_member")
    op.drop_table("rollout_event")
    op.drop_table("rollout")
