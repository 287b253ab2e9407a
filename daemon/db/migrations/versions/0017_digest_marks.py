"""digest_marks: how far each merchant's scheduled digests have covered

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

One row per merchant; ``covered_until`` moves in the transaction that
writes the digest ending there (``models.DigestMark``). A digest's own
uniqueness (one per merchant and period) is the outbox's ``event_key``
and ``message_id``; this table only says where the next one starts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_marks",
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("covered_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_digest_marks_merchant_id_merchants",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("merchant_id", name="pk_digest_marks"),
    )


def downgrade() -> None:
    op.drop_table("digest_marks")
