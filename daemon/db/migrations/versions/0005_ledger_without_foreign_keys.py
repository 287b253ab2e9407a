"""bulk-apply speed: the append-only ledger without foreign keys or its source index;
stock WITHOUT ROWID on SQLite

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

The trade, measured with ``python -m bench ingest``: every ledger row paid two
foreign-key checks. On PostgreSQL each is a per-row trigger running a
``SELECT ... FOR KEY SHARE`` on the parent, about 1.3 s of a 200,000-row full
feed (more than the whole COPY + upsert ceiling); on SQLite about 0.06 s.
The ledger is an audit trail that only ``db.bulk``, ``db.stock`` and
``db.orders`` append to, always with the ids of a product and a source they
have just read or written in the same transaction, so the checks never caught
anything. What is given up is ON DELETE CASCADE from products and sources:
nothing in Stockdrop deletes either, and if an operator does, the ledger
keeping the history of what was deleted is arguably what an audit trail
should do (the ``ledger`` listing joins products and sources, so such rows
simply stop being listed). ``stock`` keeps its foreign keys: it is the live
state that allocation reads.

``ix_ledger_source_at`` is dropped: nothing filters the ledger by source and
time (the listing orders by id), and without the foreign key no cascade needs
it. ``ix_ledger_product_at`` stays for the per-SKU history.

On SQLite ``stock`` becomes WITHOUT ROWID: its primary key (source_id,
product_id) was a second b-tree beside the table; now the table is the index.
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_source_at')
        batch_op.drop_constraint('fk_ledger_product_id_products', type_='foreignkey')
        batch_op.drop_constraint('fk_ledger_source_id_sources', type_='foreignkey')
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('stock', schema=None, recreate='always',
                                  table_kwargs={'sqlite_with_rowid': False}):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('stock', schema=None, recreate='always'):
            pass
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.create_foreign_key('fk_ledger_source_id_sources', 'sources', ['source_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_foreign_key('fk_ledger_product_id_products', 'products', ['product_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index('ix_ledger_source_at', ['source_id', 'at'], unique=False)
