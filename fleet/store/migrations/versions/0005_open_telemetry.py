"""Telemetry: open windows, reporter tokens, drift alert state; released counters.

Open windows lived in one server's memory: a restart lost them, and replicas each held a
part. They are rows now, deleted with their reporter tokens when the window closes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Released inference-error and reboot counters; aggregates released before have none.
    with op.batch_alter_table("telemetry_aggregate") as batch:
        batch.add_column(sa.Column("counters", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "telemetry_open_window",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("release_digest", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_seconds", sa.BigInteger(), nullable=False),
        sa.Column("cohort", sa.String(length=64), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mechanism", sa.JSON(), nullable=False),
        sa.Column("sums", sa.JSON(), nullable=False),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.Column("reporters", sa.BigInteger(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_open_window")),
        sa.UniqueConstraint(
            "release_digest",
            "model_version",
            "window_start",
            "cohort",
            name="uq_telemetry_open_window_key",
        ),
    )
    op.create_index(
        op.f("ix_telemetry_open_window_closes_at"),
        "telemetry_open_window",
        ["closes_at"],
        unique=False,
    )
    op.create_table(
        "telemetry_reporter",
        sa.Column("window_id", _BIG_ID, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["telemetry_open_window.id"],
            name=op.f("fk_telemetry_reporter_window_id_telemetry_open_window"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("window_id", "token", name=op.f("pk_telemetry_reporter")),
    )
    op.create_table(
        "telemetry_alert",
        sa.Column("release_digest", sa.String(length=64), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("quiet", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("release_digest", name=op.f("pk_telemetry_alert")),
    )


def downgrade() -> None:
    op.drop_table("telemetry_alert")
    op.drop_table("telemetry_reporter")
    op.drop_table("telemetry_open_window")
    with op.batch_alter_table("telemetry_aggregate") as batch:
        batch.drop_column("counters")
