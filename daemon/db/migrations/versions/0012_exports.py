"""exports: the outbox of feeds delivered to markets

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

One row per delivery, written before anything is sent, holding the file's
bytes and the listing quantities it carries; see ``models.ExportRecord``.
At most one undelivered export per market (a partial unique index), so the
next delta is always computed against what the market was delivered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_UNDELIVERED = "status <> 'delivered'"


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("market_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("lines", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind in ('delta', 'full')", name="ck_exports_kind"),
        sa.CheckConstraint("status in ('pending', 'failing', 'delivered')", name="ck_exports_status"),
        sa.ForeignKeyConstraint(["market_id"], ["markets.id"], name="fk_exports_market_id_markets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
    )
    op.create_index("ix_exports_undelivered", "exports", ["market_id"], unique=True,
                    sqlite_where=sa.text(_UNDELIVERED), postgresql_where=sa.text(_UNDELIVERED))
    op.create_index("ix_exports_market_created", "exports", ["market_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_exports_market_created", table_name="exports")
    op.drop_index("ix_exports_undelivered", table_name="exports")
    op.drop_table("exports")
