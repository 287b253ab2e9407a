"""bulk-apply speed: products without a foreign key to merchants

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

The trade, measured with ``python -m bench ingest`` (a million-row first
load on PostgreSQL): every new product paid a per-row trigger running a
``SELECT ... FOR KEY SHARE`` on its merchant, about 3.4 s of the load (a COPY
of a million products took 6.7 s with it, 3.3 s without), more than half of
what pgloader takes for the whole file. As with stock (0008) and the ledger
(0005), every writer of products (``db.bulk``, ``db.catalog``, ``db.orders``)
takes the merchant id from the merchant row it has just read in the same
transaction, so the check never caught anything. What is given up is ON
DELETE CASCADE from merchants: nothing in Stockdrop deletes a merchant
(``db.sync`` only adds and updates), and every reader of products joins or
filters by the merchant, so a product left behind by an operator's manual
delete is simply not shown.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_constraint("fk_products_merchant_id_merchants", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_products_merchant_id_merchants", "merchants", ["merchant_id"], ["id"],
                                    ondelete="CASCADE")
