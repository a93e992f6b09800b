"""Rollout claims: a device is held by at most one active rollout, kept by the database.

Before, the rule lived in a read (``busy_devices``) before the write, so two rollouts
created at once on PostgreSQL could both take a device. A claim's primary key is the
device id, so the second insert fails whatever the first read saw. Active rollouts'
members are claimed on upgrade (a device two of them already share goes to the lower id).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TERMINAL = ("completed", "aborted", "rolled_back")


def upgrade() -> None:
    op.create_table(
        "rollout_claim",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_rollout_claim_device_id_device")
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollout.id"], name=op.f("fk_rollout_claim_rollout_id_rollout")
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_rollout_claim")),
    )
    op.create_index(
        op.f("ix_rollout_claim_rollout_id"), "rollout_claim", ["rollout_id"], unique=False
    )
    op.execute(
        sa.text(
            "INSERT INTO rollout_claim (device_id, rollout_id) "
            "SELECT m.device_id, MIN(r.id) FROM rollout_member m "
            "JOIN rollout r ON r.id = m.rollout_id "
            "WHERE r.status NOT IN :terminal GROUP BY m.device_id"
        ).bindparams(sa.bindparam("terminal", value=_TERMINAL, expanding=True))
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rollout_claim_rollout_id"), table_name="rollout_claim")
    op.drop_table("rollout_claim")
