"""uploads.node and upload_applies: each file once, on any number of daemons

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Several daemons may share one PostgreSQL. ``uploads.node`` names the daemon
that received (and holds) an upload, so a daemon restarting recovers its own
uploads and never another's; NULL (rows from before) counts as every node's.

``upload_applies`` gets a row in the transaction that applies an upload: its
primary key makes a second apply of the same upload impossible, and, for
content that may be applied only once (adjust-mode feeds), a unique index on
(source, sha256) refuses the same content twice, whichever daemon tries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=100), nullable=True))
    op.create_table(
        "upload_applies",
        sa.Column("upload_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("once", sa.Boolean(), nullable=False),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], name="fk_upload_applies_upload_id_uploads",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", name="pk_upload_applies"),
    )
    op.create_index("ix_upload_applies_once", "upload_applies", ["source_id", "sha256"], unique=True,
                    sqlite_where=sa.text("once"), postgresql_where=sa.text("once"))
    op.create_index("ix_uploads_node_status", "uploads", ["node", "status"])


def downgrade() -> None:
    op.drop_index("ix_uploads_node_status", table_name="uploads")
    op.drop_index("ix_upload_applies_once", table_name="upload_applies")
    op.drop_table("upload_applies")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("node")
