"""sources.stock_version: a count of the transactions that wrote a source's stock

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

The daemon keeps the stock it last applied a feed to, per source, so that a
re-sent feed does not read a million rows back (``ingest.stock_cache``). It
may use that copy only while nobody else has written the source's stock:
every transaction that does bumps this number (``db.stock_version``), and
the copy remembers the number it is valid for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stock_version", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("stock_version")
