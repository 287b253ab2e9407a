"""bulk-apply storage: a source's full-feed as-of; integer times in stock, ledger, products on SQLite

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Two trades, measured with ``python -m bench ingest`` at a million rows.

``sources.full_feed_as_of``. A full feed re-sent every night names the same
SKUs with a few quantities changed. The stale guard needs an as-of per SKU,
and moving every unchanged row's ``stock.as_of`` to the new file's time cost
more than half of the first load. A full feed whose rows all carry the
file's own as-of states every SKU of the source as of that time, so it now
moves this one value instead; a stock row's effective as-of is the later of
its own and its source's (``db.stock.effective_as_of``). Existing rows keep
their own values, so nothing changes meaning on upgrade.

Integer times on SQLite (``types.UTCMicros``). SQLAlchemy's SQLite text form
of a time is 26 bytes, and a bulk apply writes four of them per row
(``stock.as_of``, ``stock.updated_at``, ``ledger.at``, ``products.created_at``)
plus one in the ledger's index: most of the bytes of a first load, and a
formatted string per row on the way in and out. Microseconds since the epoch
are at most 8 bytes and plain ints. The declared column type stays (SQLite's
DATETIME has numeric affinity, so integers are kept as integers); only the
values are rewritten. PostgreSQL keeps timestamptz and is not touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column) pairs whose SQLite values become integer microseconds.
_MICROS = (("stock", "as_of"), ("stock", "updated_at"), ("ledger", "at"), ("products", "created_at"))


def _to_micros(column: str) -> str:
    # 'YYYY-MM-DD HH:MM:SS[.ffffff]' (what SQLAlchemy wrote) -> exact integer microseconds.
    return (f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000 "
            f"+ CAST(substr({column} || '.000000', 21, 6) AS INTEGER)")


def _to_text(column: str) -> str:
    return (f"strftime('%Y-%m-%d %H:%M:%S', {column} / 1000000, 'unixepoch') "
            f"|| '.' || substr('000000' || ({column} % 1000000), -6)")


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("full_feed_as_of", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        for table, column in _MICROS:
            op.execute(f"UPDATE {table} SET {column} = {_to_micros(column)} "
                       f"WHERE typeof({column}) = 'text'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, column in _MICROS:
            op.execute(f"UPDATE {table} SET {column} = {_to_text(column)} "
                       f"WHERE typeof({column}) = 'integer'")
        full_feed = _to_text("full_feed_as_of")
    else:
        full_feed = "full_feed_as_of"
    # Fold the source's as-of back into its rows, so the stale guard keeps its meaning.
    op.execute(
        f"UPDATE stock SET as_of = (SELECT {full_feed} FROM sources WHERE sources.id = stock.source_id) "
        "WHERE EXISTS (SELECT 1 FROM sources WHERE sources.id = stock.source_id "
        "AND sources.full_feed_as_of IS NOT NULL AND (stock.as_of IS NULL "
        f"OR stock.as_of < {full_feed}))"
    )
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("full_feed_as_of")
