"""bulk-apply speed: stock without foreign keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

The trade, measured with ``python -m bench ingest`` (a million-row first
load): every stock row paid two foreign-key checks, to its product and its
source. On PostgreSQL each is a per-row trigger that runs a ``SELECT ... FOR
KEY SHARE`` on the parent and so locks a million product rows; on SQLite
about 0.5 s, a tenth of the whole apply. As with the ledger (0005), every
writer of stock (``db.bulk`` and ``db.stock.write_change``) takes the ids
from rows it has just read or created in the same transaction, under the
source's lock, so the checks never caught anything. What is given up is ON
DELETE CASCADE from products and sources: nothing in Stockdrop deletes
either, and every reader of stock joins both, so a row left behind by an
operator's manual delete is simply not shown.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SQLITE = {"sqlite_with_rowid": False}  # stock stays WITHOUT ROWID (0005)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("stock", schema=None, table_kwargs=_SQLITE if sqlite else {}) as batch_op:
        batch_op.drop_constraint("fk_stock_product_id_products", type_="foreignkey")
        batch_op.drop_constraint("fk_stock_source_id_sources", type_="foreignkey")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("stock", schema=None, table_kwargs=_SQLITE if sqlite else {}) as batch_op:
        batch_op.create_foreign_key("fk_stock_source_id_sources", "sources", ["source_id"], ["id"],
                                    ondelete="CASCADE")
        batch_op.create_foreign_key("fk_stock_product_id_products", "products", ["product_id"], ["id"],
                                    ondelete="CASCADE")
