"""Telemetry: released cohort aggregates (sums and a reporter count, no device).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:48:30.521577
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telemetry_aggregate",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("release_digest", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_seconds", sa.BigInteger(), nullable=False),
        sa.Column("cohort", sa.String(length=64), nullable=False),
        sa.Column("reporters", sa.BigInteger(), nullable=False),
        sa.Column("mechanism", sa.JSON(), nullable=False),
        sa.Column("central_epsilon", sa.Float(), nullable=False),
        sa.Column("histograms", sa.JSON(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_aggregate")),
        sa.UniqueConstraint(
            "release_digest",
            "model_version",
            "window_start",
            "cohort",
            name="uq_telemetry_aggregate_key",
        ),
    )
    op.create_index(
        op.f("ix_telemetry_aggregate_release_digest_window_start"),
        "telemetry_aggregate",
        ["release_digest", "window_start"],
        unique=False,
    )
    op.create_index(
        op.f("ix_telemetry_aggregate_window_start"),
        "telemetry_aggregate",
        ["window_start"],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes with it.
    op.drop_table("telemetry_aggregate")
