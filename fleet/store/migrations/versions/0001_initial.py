"""Initial schema: devices, releases, the director outbox, events and tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 15:38:09.808805
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_api_token")),
    )
    op.create_table(
        "artifact",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_artifact")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_at"), "audit_event", ["at"], unique=False)
    op.create_index(
        op.f("ix_audit_event_subject_at"), "audit_event", ["subject", "at"], unique=False
    )
    op.create_table(
        "device_class",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ram_bytes", sa.BigInteger(), nullable=False),
        sa.Column("flash_bytes", sa.BigInteger(), nullable=False),
        sa.Column("supported_ops", sa.JSON(), nullable=False),
        sa.Column("cpu", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_device_class")),
    )
    op.create_table(
        "device",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("device_class", sa.String(length=64), nullable=False),
        sa.Column("public_key_hex", sa.String(length=64), nullable=False),
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("director_sequence", sa.BigInteger(), nullable=False),
        sa.Column("status_counter", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("running_release_digest", sa.String(length=64), nullable=True),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_class"],
            ["device_class.name"],
            name=op.f("fk_device_device_class_device_class"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device")),
        sa.UniqueConstraint("keyid", name=op.f("uq_device_keyid")),
    )
    op.create_index(op.f("ix_device_device_class"), "device", ["device_class"], unique=False)
    op.create_index(
        op.f("ix_device_running_release_digest"), "device", ["running_release_digest"], unique=False
    )
    op.create_table(
        "release",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("device_class", sa.String(length=64), nullable=False),
        sa.Column("envelope_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_class"],
            ["device_class.name"],
            name=op.f("fk_release_device_class_device_class"),
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_release")),
    )
    op.create_index(
        op.f("ix_release_device_class_created_at"),
        "release",
        ["device_class", "created_at"],
        unique=False,
    )
    op.create_table(
        "calibration",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_calibration_device_id_device")
        ),
        sa.PrimaryKeyConstraint("device_id", "version", name=op.f("pk_calibration")),
    )
    op.create_table(
        "device_tag",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["device.id"],
            name=op.f("fk_device_tag_device_id_device"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "tag", name=op.f("pk_device_tag")),
    )
    op.create_index(op.f("ix_device_tag_tag"), "device_tag", ["tag"], unique=False)
    op.create_table(
        "director_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("release_digest", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("rollout_id", sa.String(length=64), nullable=True),
        sa.Column("wave", sa.BigInteger(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope_json", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_director_outbox_device_id_device")
        ),
        sa.ForeignKeyConstraint(
            ["release_digest"],
            ["release.digest"],
            name=op.f("fk_director_outbox_release_digest_release"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_director_outbox")),
        sa.UniqueConstraint(
            "device_id", "sequence", name=op.f("uq_director_outbox_device_id_sequence")
        ),
    )
    op.create_index(
        "ix_director_outbox_unpublished",
        "director_outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "status_event",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("release_digest", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=256), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_status_event_device_id_device")
        ),
        sa.PrimaryKeyConstraint("device_id", "counter", name=op.f("pk_status_event")),
    )
    op.create_index(
        op.f("ix_status_event_device_id_received_at"),
        "status_event",
        ["device_id", "received_at"],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes with it.
    op.drop_table("status_event")
    op.drop_table("director_outbox")
    op.drop_table("device_tag")
    op.drop_table("calibration")
    op.drop_table("release")
    op.drop_table("device")
    op.drop_table("device_class")
    op.drop_table("audit_event")
    op.drop_table("artifact")
    op.drop_table("api_token")
