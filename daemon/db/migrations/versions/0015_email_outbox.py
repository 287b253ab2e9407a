"""email_outbox: every alert and digest, written before it is sent

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03

One row per email holding its MIME bytes and a Message-ID made when the
row was written; see ``models.EmailRecord``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=True),
        sa.Column("coalesce_key", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind in ('alert', 'digest')", name="ck_email_outbox_kind"),
        sa.CheckConstraint("status in ('pending', 'sent', 'failed', 'coalesced')", name="ck_email_outbox_status"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_email_outbox_merchant_id_merchants",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_email_outbox"),
        sa.UniqueConstraint("message_id", name="uq_email_outbox_message_id"),
        sa.UniqueConstraint("event_key", name="uq_email_outbox_event_key"),
    )
    op.create_index("ix_email_outbox_status", "email_outbox", ["status", "id"])
    op.create_index("ix_email_outbox_coalesce", "email_outbox", ["coalesce_key", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_email_outbox_coalesce", table_name="email_outbox")
    op.drop_index("ix_email_outbox_status", table_name="email_outbox")
    op.drop_table("email_outbox")
