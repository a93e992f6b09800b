"""Broker accounts: an outbox of device login changes; revoked and decommissioned devices.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "broker_account_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("password", sa.String(length=128), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broker_account_outbox")),
    )
    op.create_index(
        op.f("ix_broker_account_outbox_device_id"),
        "broker_account_outbox",
        ["device_id"],
        unique=False,
    )
    op.create_index(
        "ix_broker_account_outbox_pending",
        "broker_account_outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("applied_at IS NULL"),
        sqlite_where=sa.text("applied_at IS NULL"),
    )
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("decommissioned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.drop_column("decommissioned_at")
        batch.drop_column("revoked_at")
    op.drop_index("ix_broker_account_outbox_pending", table_name="broker_account_outbox")
    op.drop_index(op.f("ix_broker_account_outbox_device_id"), table_name="broker_account_outbox")
    op.drop_table("broker_account_outbox")
