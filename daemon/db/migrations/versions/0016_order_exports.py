"""order files to warehouses: fulfilments, the order_exports outbox; warehouse cancellations; shipped lines

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

``fulfilments`` holds what each warehouse was sent of each order line and
what its status files answered; ``order_exports`` is the outbox of order
files, one undelivered per warehouse (as ``exports`` is per market). A
warehouse's ``CANCELLED`` is a cancellation of origin ``warehouse``; its
``SHIPPED`` / ``COMPLETE`` closes the line (``shipped``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_UNDELIVERED = "status <> 'delivered'"


def upgrade() -> None:
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_order_lines_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_order_lines_status"), "status in ('open', 'cancelled', 'shipped')")
    with op.batch_alter_table("cancellations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_cancellations_origin"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_cancellations_origin"),
                                         "origin in ('market', 'stockdrop', 'warehouse')")
    op.create_table(
        "fulfilments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("allocation_id", sa.Integer(), nullable=False),
        sa.Column("order_line_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("last_export_id", sa.Integer(), nullable=True),
        sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tracking_number", sa.String(length=200), nullable=True),
        sa.Column("shipping_service", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("status_upload_id", sa.Integer(), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status in ('open', 'shipped', 'complete', 'cancelled', 'error', 'unconfirmed')",
                           name=op.f("ck_fulfilments_status")),
        sa.ForeignKeyConstraint(["allocation_id"], ["order_allocations.id"],
                                name="fk_fulfilments_allocation_id_order_allocations", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["order_line_id"], ["order_lines.id"],
                                name="fk_fulfilments_order_line_id_order_lines", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name="fk_fulfilments_source_id_sources",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_fulfilments"),
        sa.UniqueConstraint("allocation_id", name="uq_fulfilments_allocation_id"),
    )
    op.create_index("ix_fulfilments_source_status", "fulfilments", ["source_id", "status"])
    op.create_index("ix_fulfilments_line", "fulfilments", ["order_line_id"])
    op.create_table(
        "order_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("fulfilments", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status in ('pending', 'failing', 'delivered')", name=op.f("ck_order_exports_status")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name="fk_order_exports_source_id_sources",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_order_exports"),
    )
    op.create_index("ix_order_exports_undelivered", "order_exports", ["source_id"], unique=True,
                    sqlite_where=sa.text(_UNDELIVERED), postgresql_where=sa.text(_UNDELIVERED))
    op.create_index("ix_order_exports_source_created", "order_exports", ["source_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_order_exports_source_created", table_name="order_exports")
    op.drop_index("ix_order_exports_undelivered", table_name="order_exports")
    op.drop_table("order_exports")
    op.drop_index("ix_fulfilments_line", table_name="fulfilments")
    op.drop_index("ix_fulfilments_source_status", table_name="fulfilments")
    op.drop_table("fulfilments")
    # Rows only this revision allows cannot stay under the old constraints.
    op.execute("UPDATE order_lines SET status = 'open' WHERE status = 'shipped'")
    op.execute("UPDATE cancellations SET origin = 'market' WHERE origin = 'warehouse'")
    with op.batch_alter_table("cancellations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_cancellations_origin"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_cancellations_origin"), "origin in ('market', 'stockdrop')")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_order_lines_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_order_lines_status"), "status in ('open', 'cancelled')")
