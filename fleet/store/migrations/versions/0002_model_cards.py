"""Model cards: what inspection read from each ``.tflite`` artifact, and its reference.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_card",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["artifact.sha256"], name=op.f("fk_model_card_sha256_artifact")
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_model_card")),
    )


def downgrade() -> None:
    op.drop_table("model_card")
