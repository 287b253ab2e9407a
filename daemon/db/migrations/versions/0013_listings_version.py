"""markets.listings_version: a count of the transactions that added a market's listings

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

The exporter keeps each market's lines between exports (``db.market_lines``)
and brings them up to date from the ledger. Listings are the other thing
those lines are made of; asking the listings table whether any were added
costs a scan of the market's index (80-130 ms for a million listings on
SQLite), every poll. This number moves instead, in the transaction that adds
them (``db.listings_version``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("markets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("listings_version", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("markets", schema=None) as batch_op:
        batch_op.drop_column("listings_version")
