"""CoAP keys: each device's OSCORE master secret and the server's sequence lease.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 01:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coap_keys",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("device_kid", sa.String(length=14), nullable=False),
        sa.Column("master_secret", sa.String(length=128), nullable=False),
        sa.Column("master_salt", sa.String(length=128), nullable=False),
        sa.Column("server_id", sa.String(length=14), nullable=False),
        sa.Column("next_sequence", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_coap_keys_device_id_device")
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_coap_keys")),
        sa.UniqueConstraint("device_kid", name=op.f("uq_coap_keys_device_kid")),
    )


def downgrade() -> None:
    op.drop_table("coap_keys")
