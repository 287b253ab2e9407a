"""SQLAlchemy models. Migrations in ``migrations/versions`` must match them.

Naming convention on constraints so Alembic can alter them on SQLite (batch
mode) and PostgreSQL alike, and new tables need no renames.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from daemon.db.types import UTCDateTime, UTCMicros

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Source(Base):
    """An inventory source: the merchant-fulfilled one, or a warehouse."""

    __tablename__ = "sources"
    __table_args__ = (
        UniqueConstraint("merchant_id", "name", name="uq_sources_merchant_name"),
        CheckConstraint("kind in ('merchant-fulfilled', 'warehouse')", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=100)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The as-of time of the last full feed that named every SKU at one time:
    # every stock row of this source is known as of at least then, so a
    # re-sent full feed moves this one value instead of every row's as_of.
    # A stock row's effective as-of is the later of the two (db.stock.effective_as_of).
    full_feed_as_of: Mapped[datetime | None] = mapped_column(UTCMicros(), nullable=True)
    # Bumped by every transaction that writes this source's stock
    # (db.stock_version); never read through this attribute, which can be stale.
    stock_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Product(Base):
    """A SKU of a merchant, kept as text exactly as given (leading zeros too)."""

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("merchant_id", "sku", name="uq_products_merchant_sku"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign key: a first load would pay a check per new product
    # (migration 0011 has the measurements); every writer takes the id from
    # the merchant row it has just read.
    merchant_id: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCMicros())


class Stock(Base):
    """The current quantity of one product in one source."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        # On SQLite the primary key is the table (no second b-tree); see migration 0005.
        {"sqlite_with_rowid": False},
    )

    # No foreign keys: a bulk apply would pay two checks per row (migration
    # 0008 has the measurements); every writer takes both ids from rows it
    # has just read or created in the same transaction.
    source_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime | None] = mapped_column(UTCMicros(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCMicros())


class LedgerEntry(Base):
    """One change of one product's quantity in one source. Never updated.

    Append-only, so no foreign keys: they cost a per-row check on every bulk
    apply (a trigger per row and key on PostgreSQL) and every writer takes
    the ids from rows it has just read or written. Migration 0005 has the
    measurements and the trade.
    """

    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_product_at", "product_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(Integer)
    before: Mapped[int] = mapped_column(Integer)
    after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCMicros())


class Upload(Base):
    """The upload history: one row per file received, whatever its way in."""

    __tablename__ = "uploads"
    __table_args__ = (
        CheckConstraint("(source_id IS NULL) <> (market_id IS NULL)", name="one_owner"),
        Index("ix_uploads_market_received", "market_id", "received_at"),
        Index("ix_uploads_source_received", "source_id", "received_at"),
        Index("ix_uploads_source_sha", "source_id", "sha256"),
        Index("ix_uploads_status", "status"),
        Index("ix_uploads_node_status", "node", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A quantity feed belongs to a source; an order or cancellation file to a market.
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), nullable=True)
    market_id: Mapped[int | None] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="feed", server_default="feed")  # feed, orders, cancellations
    original_name: Mapped[str] = mapped_column(String(255))
    spool_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(16))
    user: Mapped[str | None] = mapped_column(String(100), nullable=True)
    remote_addr: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(24), default="received")  # inventory.uploads.UploadStatus
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings: Mapped[str | None] = mapped_column(Text, nullable=True)
    duplicate_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    applied: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    zeroed: Mapped[int] = mapped_column(Integer, default=0)
    stale: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_s: Mapped[float | None] = mapped_column(nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Where the original bytes are kept after the commit (archive or quarantine).
    kept_at: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The daemon that received the file and holds it in its spool (migration 0010).
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)


class UploadApply(Base):
    """The apply of one upload, written in the transaction that applies it.

    The primary key makes a second apply of the same upload impossible; with
    ``once`` (content that may be applied a single time: adjust-mode feeds)
    the partial unique index refuses the same content twice for a source.
    """

    __tablename__ = "upload_applies"
    __table_args__ = (
        Index("ix_upload_applies_once", "source_id", "sha256", unique=True,
              sqlite_where=text("once"), postgresql_where=text("once")),
    )

    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    source_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    once: Mapped[bool] = mapped_column()
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UploadError(Base):
    """One problem in an upload: the row, column, value and a sentence."""

    __tablename__ = "upload_errors"
    __table_args__ = (Index("ix_upload_errors_upload", "upload_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"))
    row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    column: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    sku: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message: Mapped[str] = mapped_column(Text)


class Account(Base):
    """A login for the hosted FTP/SFTP endpoints, jailed to one folder: a
    source's, or a market's orders or cancellations folder."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("(source_id IS NULL) <> (market_id IS NULL)", name="one_folder"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), nullable=True)
    market_id: Mapped[int | None] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="feed", server_default="feed")
    username: Mapped[str] = mapped_column(String(100), unique=True)
    # bcrypt only: a plain-text or reversible password never reaches the database.
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled: Mapped[bool] = mapped_column(default=False)


class AccountKey(Base):
    """An SSH public key that may log in as an account (SFTP)."""

    __tablename__ = "account_keys"
    __table_args__ = (UniqueConstraint("account_id", "key_blob", name="uq_account_keys_account_blob"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key_type: Mapped[str] = mapped_column(String(64))
    key_blob: Mapped[str] = mapped_column(Text)  # base64, as in authorized_keys
    comment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PulledFile(Base):
    """A file fetched from a remote SFTP folder, so it is never fetched twice
    even when deleting it on the remote side failed."""

    __tablename__ = "pulled_files"
    __table_args__ = (
        UniqueConstraint("source_id", "remote_path", "size", "mtime", name="uq_pulled_files_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    remote_path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[int] = mapped_column(BigInteger)  # seconds since the epoch, as SFTP gives it
    sha256: Mapped[str] = mapped_column(String(64))
    upload_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    remote_removed: Mapped[bool] = mapped_column(default=False)


# --- markets, listings, orders and cancellations -------------------------------


class MarketRecord(Base):
    """A marketplace a merchant sells on, from the config or ``market add``.

    ``sources`` is a JSON list of source names, NULL for every source.
    ``connected_at`` is set by the market's first listing import.
    """

    __tablename__ = "markets"
    __table_args__ = (
        UniqueConstraint("merchant_id", "name", name="uq_markets_merchant_name"),
        CheckConstraint("kind in ('amazon', 'ebay', 'walmart', 'shopify', 'generic')", name="kind"),
        CheckConstraint("restock in ('always', 'never', 'by_origin')", name="restock"),
        CheckConstraint("buffer >= 0 and minimum >= 0 and percent between 0 and 100", name="rules"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    sources: Mapped[str | None] = mapped_column(Text, nullable=True)
    buffer: Mapped[int] = mapped_column(Integer, default=0)
    percent: Mapped[int] = mapped_column(Integer, default=100)
    maximum: Mapped[int | None] = mapped_column(Integer, nullable=True)
    minimum: Mapped[int] = mapped_column(Integer, default=0)
    restock: Mapped[str] = mapped_column(String(16), default="by_origin")
    from_config: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Bumped by every transaction that adds listings to the market
    # (db.listings_version); never read through this attribute, which can be stale.
    listings_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MerchantPolicy(Base):
    """Per-merchant order rules copied from the config, and the first integration.

    ``first_market_id`` is the market whose listing import set the
    merchant-fulfilled quantities (first integration wins); NULL until then.
    """

    __tablename__ = "merchant_policies"

    merchant_id: Mapped[int] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True
    )
    split_orders: Mapped[bool] = mapped_column(default=False)
    restock_window_days: Mapped[int] = mapped_column(Integer, default=14)
    first_market_id: Mapped[int | None] = mapped_column(
        ForeignKey("markets.id", ondelete="SET NULL"), nullable=True
    )
    integrated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Listing(Base):
    """A SKU a market sells. ``needs_update``: send it the current inventory."""

    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("market_id", "product_id", name="uq_listings_market_product"),
        Index("ix_listings_product", "product_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    listed_quantity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    needs_update: Mapped[bool] = mapped_column(default=False)
    last_sent_quantity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ListingLocation(Base):
    """A location a listing came with on its market's listing file, and how that file names the item.

    Shopify's inventory file has one row per variant and location, keyed by
    the product's handle and its option values; the export writes those rows
    back, so the import keeps them (``db.listing_details``). A table of its
    own rather than columns on ``listings``: a variant is stocked at any
    number of locations, and only Shopify markets have rows here.
    """

    __tablename__ = "listing_locations"

    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id", ondelete="CASCADE"), primary_key=True)
    location: Mapped[str] = mapped_column(String(255), primary_key=True)
    handle: Mapped[str] = mapped_column(String(255))
    option1: Mapped[str | None] = mapped_column(String(255), nullable=True)
    option2: Mapped[str | None] = mapped_column(String(255), nullable=True)
    option3: Mapped[str | None] = mapped_column(String(255), nullable=True)


class OrderLineRecord(Base):
    """One line of one market order, imported once.

    ``shortfall`` units were sold but in no source (oversold), attributed to
    ``shortfall_source_id``. A line cancelled before its order arrived is
    kept with ``product_id`` NULL and quantity 0 so the late order is skipped.
    ``shipped``: every warehouse it was sent to confirmed it (SHIPPED or COMPLETE).
    """

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("market_id", "order_id", "line_id", name="uq_order_lines_market_order_line"),
        CheckConstraint("status in ('open', 'cancelled', 'shipped')", name="status"),
        CheckConstraint("quantity >= 0 and shortfall >= 0", name="quantities"),
        Index("ix_order_lines_market_status", "market_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"))
    order_id: Mapped[str] = mapped_column(String(100))
    line_id: Mapped[str] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), nullable=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="open")
    shortfall: Mapped[int] = mapped_column(Integer, default=0)
    shortfall_source_id: Mapped[int | None] = mapped_column(
        ForeignKey("sources.id", ondelete="SET NULL"), nullable=True
    )
    upload_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)


class OrderAllocation(Base):
    """Units one order line took from one source (denormalised for the oversell window)."""

    __tablename__ = "order_allocations"
    __table_args__ = (
        Index("ix_order_allocations_source_ordered", "source_id", "ordered_at"),
        Index("ix_order_allocations_line", "order_line_id"),
        CheckConstraint("quantity > 0 and returned >= 0 and returned <= quantity", name="quantities"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)
    returned: Mapped[int] = mapped_column(Integer, default=0)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Cancellation(Base):
    """The cancellation of one order line; at most one per line."""

    __tablename__ = "cancellations"
    __table_args__ = (CheckConstraint("origin in ('market', 'stockdrop', 'warehouse')", name="origin"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_line_id: Mapped[int] = mapped_column(
        ForeignKey("order_lines.id", ondelete="CASCADE"), unique=True
    )
    origin: Mapped[str] = mapped_column(String(16))
    requested_restock: Mapped[bool | None] = mapped_column(nullable=True)
    restocked: Mapped[bool] = mapped_column(default=False)
    refused: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text)
    cancelled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    upload_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)


class ExportRecord(Base):
    """One delivery of a feed to a market: the outbox row, written before anything is sent.

    ``content`` is the file exactly as it is sent, so a delivery interrupted
    by a crash or a down endpoint is sent again byte for byte under the same
    ``file_name``, never recomputed. ``lines`` holds the (listing id,
    quantity) pairs it carries (Arrow IPC); the listings' ``last_sent_quantity``
    advance to them in the transaction that marks it delivered, after the
    remote rename. The partial unique index allows one undelivered export per
    market: the next delta is computed only against what was delivered.
    """

    __tablename__ = "exports"
    __table_args__ = (
        Index("ix_exports_undelivered", "market_id", unique=True,
              sqlite_where=text("status <> 'delivered'"), postgresql_where=text("status <> 'delivered'")),
        Index("ix_exports_market_created", "market_id", "created_at"),
        CheckConstraint("kind in ('delta', 'full')", name="kind"),
        CheckConstraint("status in ('pending', 'failing', 'delivered')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))  # change, schedule, manual
    file_name: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(40))
    destination: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    line_count: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    lines: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EmailRecord(Base):
    """One email, written whole (``message``: the MIME bytes as sent) before anything is sent.

    ``message_id`` is made when the row is written and is in ``message``, so a
    resend after a crash is the same mail that receivers can recognise.
    ``event_key`` names the event an alert is for (``upload:12:held``): unique,
    so an event seen twice (recovery finishing a file again) is one mail.
    ``coalesce_key`` names its cause (a source and a kind of reason); an alert
    held back by coalescing is a ``coalesced`` row without a message, counted
    in the next mail of that cause. ``claimed_by``/``claimed_until`` hold a
    row while one sender has it in hand.
    """

    __tablename__ = "email_outbox"
    __table_args__ = (
        Index("ix_email_outbox_status", "status", "id"),
        Index("ix_email_outbox_coalesce", "coalesce_key", "created_at"),
        CheckConstraint("kind in ('alert', 'digest')", name="kind"),
        CheckConstraint("status in ('pending', 'sent', 'failed', 'coalesced')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"), nullable=True)
    recipients: Mapped[str] = mapped_column(Text)  # comma-separated bare addresses
    subject: Mapped[str] = mapped_column(String(300))
    message: Mapped[bytes] = mapped_column(LargeBinary)
    event_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    coalesce_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Fulfilment(Base):
    """What one warehouse was sent of one order line (one allocation), and what it answered.

    Made when the line first goes into an order file to the warehouse.
    ``open`` and ``error`` lines are sent again on every run until a status
    file says ``shipped``, ``complete`` or ``cancelled``; one sent ``1 +
    resend_limit`` times without an answer becomes ``unconfirmed`` and is
    not sent again. ``sends`` counts delivered order files that carried it.
    """

    __tablename__ = "fulfilments"
    __table_args__ = (
        Index("ix_fulfilments_source_status", "source_id", "status"),
        Index("ix_fulfilments_line", "order_line_id"),
        CheckConstraint("status in ('open', 'shipped', 'complete', 'cancelled', 'error', 'unconfirmed')",
                        name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("order_allocations.id", ondelete="CASCADE"), unique=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    sends: Mapped[int] = mapped_column(Integer, default=0)
    last_export_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    tracking_number: Mapped[str | None] = mapped_column(String(200), nullable=True)
    shipping_service: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # the warehouse's error, or why flagged
    status_upload_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the status file that said it
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderExportRecord(Base):
    """One order file to a warehouse: the outbox row, written before anything is sent.

    As ``ExportRecord`` for markets: ``content`` is the file byte for byte,
    so a delivery cut off by a crash is sent again under the same
    ``file_name``; ``fulfilments`` (a JSON list of ids) are the lines it
    carries, whose ``sends`` advance in the transaction that marks it
    delivered, after the remote rename. One undelivered file per warehouse.
    """

    __tablename__ = "order_exports"
    __table_args__ = (
        Index("ix_order_exports_undelivered", "source_id", unique=True,
              sqlite_where=text("status <> 'delivered'"), postgresql_where=text("status <> 'delivered'")),
        Index("ix_order_exports_source_created", "source_id", "created_at"),
        CheckConstraint("status in ('pending', 'failing', 'delivered')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, manual
    file_name: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(40))
    destination: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    line_count: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    fulfilments: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DigestMark(Base):
    """How far a merchant's scheduled digests have covered: the watermark.

    ``covered_until`` moves in the transaction that writes the digest for
    the period ending there into ``email_outbox``, so a restart neither
    skips nor repeats a period. The first look at a merchant records the
    latest scheduled time without writing a digest; the first digest covers
    from there. A manual ``report send`` leaves it where it is.
    """

    __tablename__ = "digest_marks"

    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True)
    covered_until: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the daemon that moved it last


class LoginBan(Base):
    """An address refused by the hosted FTP and SFTP endpoints until ``banned_until``.

    Kept after it ends (``daemon.auth.bans``' ``remember_s``) so the next ban
    of a repeat offender lasts longer; ``bans`` counts them. Every daemon on
    the database reads this table, so a ban by one is honoured by all.
    """

    __tablename__ = "login_bans"
    __table_args__ = (Index("ix_login_bans_banned_until", "banned_until"),)

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    banned_until: Mapped[datetime] = mapped_column(UTCDateTime())
    bans: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)
    banned_at: Mapped[datetime] = mapped_column(UTCDateTime())
