"""uploads of order and cancellation files belong to a market

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('market_id', sa.Integer(), nullable=True))
        # Every upload before this revision was a quantity feed.
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='feed'))
        batch_op.alter_column('source_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index('ix_uploads_market_received', ['market_id', 'received_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_uploads_market_id_markets'), 'markets',
                                    ['market_id'], ['id'], ondelete='CASCADE')
        batch_op.create_check_constraint(batch_op.f('ck_uploads_one_owner'),
                                         '(source_id IS NULL) <> (market_id IS NULL)')



def downgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_uploads_one_owner'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_uploads_market_id_markets'), type_='foreignkey')
        batch_op.drop_index('ix_uploads_market_received')
        batch_op.alter_column('source_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('kind')
        batch_op.drop_column('market_id')
