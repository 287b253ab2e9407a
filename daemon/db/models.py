"""SQLAlchemy models. Migrations in ``migrations/versions`` must match them.

Naming convention on constraints so Alembic can alter them on SQLite (batch
mode) and PostgreSQL alike, and later issues can add tables without renames.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from daemon.db.types import UTCDateTime

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


class Product(Base):
    """A SKU of a merchant, kept as text exactly as given (leading zeros too)."""

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("merchant_id", "sku", name="uq_products_merchant_sku"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Stock(Base):
    """The current quantity of one product in one source."""

    __tablename__ = "stock"
    __table_args__ = (CheckConstraint("quantity >= 0", name="quantity_not_negative"),)

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerEntry(Base):
    """One change of one product's quantity in one source. Never updated."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_product_at", "product_id", "at"),
        Index("ix_ledger_source_at", "source_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    before: Mapped[int] = mapped_column(Integer)
    after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


UPLOAD_STATUSES = (
    "received",
    "processing",
    "applied",
    "applied_with_errors",
    "rejected",
    "held",
    "duplicate",
)


class Upload(Base):
    """The upload history: one row per file received, whatever its way in."""

    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_source_received", "source_id", "received_at"),
        Index("ix_uploads_source_sha", "source_id", "sha256"),
        Index("ix_uploads_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    original_name: Mapped[str] = mapped_column(String(255))
    spool_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(16))
    user: Mapped[str | None] = mapped_column(String(100), nullable=True)
    remote_addr: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(24), default="received")
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
    """A login for the hosted FTP/SFTP endpoints, jailed to one source's folder."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
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


# --- markets, listings, orders and cancellations (issue 5) -------------------

MARKET_KINDS = ("amazon", "ebay", "walmart", "shopify", "generic")
RESTOCK_POLICIES = ("always", "never", "by_origin")
ORDER_STATUSES = ("open", "cancelled")
