"""accounts may belong to a market's orders or cancellations folder

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("market_id", sa.Integer(), nullable=True))
        # Every account before this revision was a source's.
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="feed"))
        batch_op.alter_column("source_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_foreign_key(batch_op.f("fk_accounts_market_id_markets"), "markets",
                                    ["market_id"], ["id"], ondelete="CASCADE")
        batch_op.create_check_constraint(batch_op.f("ck_accounts_one_folder"),
                                         "(source_id IS NULL) <> (market_id IS NULL)")


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_accounts_one_folder"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_accounts_market_id_markets"), type_="foreignkey")
        batch_op.alter_column("source_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("kind")
        batch_op.drop_column("market_id")
