"""FTP/SFTP accounts in the database: logins, their public keys, what they are jailed to.

Only password hashes are stored; the hashing is ``daemon.auth.passwords``'.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.db.models import Account as AccountRow
from daemon.db.models import AccountKey, MarketRecord, Merchant, Source
from daemon.errors import NotFound, UserError


def _account(session: Session, username: str) -> AccountRow:
    row = session.scalar(select(AccountRow).where(AccountRow.username == username))
    if row is None:
        raise NotFound(f"no account named {username!r}")
    return row


def add_account(session: Session, source: Source | None, username: str, password_hash: str | None,
                now: datetime, *, market: MarketRecord | None = None, kind: str = "feed") -> AccountRow:
    """An account for a source's folder (``kind`` feed, or statuses: its status files'
    folder), or (``market``, ``kind``) a market's orders or cancellations folder."""
    if session.scalar(select(AccountRow.id).where(AccountRow.username == username)) is not None:
        raise UserError(f"an account named {username!r} exists already")
    if (source is None) == (market is None):
        raise UserError("an account belongs to one source or one market")
    row = AccountRow(source_id=source.id if source else None, market_id=market.id if market else None,
                     kind=kind, username=username, created_at=now,
                     password_hash=password_hash)
    session.add(row)
    session.flush()
    return row


def set_password_hash(session: Session, username: str, password_hash: str) -> None:
    _account(session, username).password_hash = password_hash


def remove_account(session: Session, username: str) -> None:
    session.delete(_account(session, username))


def add_key(session: Session, username: str, key_type: str, blob: bytes, comment: str | None,
            fingerprint: str, now: datetime) -> None:
    """Let a public key (its type and raw blob) log in as ``username``."""
    row = _account(session, username)
    b64 = base64.b64encode(blob).decode()
    if has_key(session, row.id, b64):
        raise UserError("this key is already on the account")
    session.add(AccountKey(account_id=row.id, key_type=key_type, key_blob=b64, comment=comment,
                           fingerprint=fingerprint, created_at=now))


def usernames_for_source(session: Session, source_id: int) -> list[str]:
    return list(session.scalars(select(AccountRow.username).where(AccountRow.source_id == source_id)
                                .order_by(AccountRow.username)))


@dataclass(frozen=True)
class AccountInfo:
    username: str
    merchant: str
    source: str  # the source, or "market:<name>/<orders|cancellations>"
    has_password: bool
    keys: list[str]  # fingerprints
    created_at: datetime


def list_accounts(session: Session, merchant: str | None = None) -> list[AccountInfo]:
    query = (select(AccountRow, Merchant.name, Source.name, MarketRecord.name)
             .outerjoin(Source, AccountRow.source_id == Source.id)
             .outerjoin(MarketRecord, AccountRow.market_id == MarketRecord.id)
             .join(Merchant, Merchant.id == func.coalesce(Source.merchant_id, MarketRecord.merchant_id))
             .order_by(AccountRow.username))
    if merchant:
        query = query.where(Merchant.name == merchant)
    out = []
    for row, m, s, mk in session.execute(query):
        keys = session.scalars(select(AccountKey.fingerprint).where(AccountKey.account_id == row.id)).all()
        folder = (s + ("/statuses" if row.kind == "statuses" else "")) if s is not None else f"market:{mk}/{row.kind}"
        out.append(AccountInfo(row.username, m, folder, row.password_hash is not None, list(keys),
                               row.created_at))
    return out


@dataclass(frozen=True)
class Login:
    """What a login needs of an enabled account."""

    id: int
    password_hash: str | None
    source_id: int | None
    market_id: int | None
    kind: str


def find_login(session: Session, username: str) -> Login | None:
    row = session.scalar(select(AccountRow).where(AccountRow.username == username,
                                                  AccountRow.disabled.is_(False)))
    if row is None:
        return None
    return Login(row.id, row.password_hash, row.source_id, row.market_id, row.kind)


def has_key(session: Session, account_id: int, key_blob: str) -> bool:
    """Whether the account holds this public key (base64, as stored)."""
    return session.scalar(select(AccountKey.id).where(AccountKey.account_id == account_id,
                                                      AccountKey.key_blob == key_blob)) is not None


def has_any_key(session: Session, username: str) -> bool:
    return session.scalar(
        select(AccountKey.id).join(AccountRow).where(AccountRow.username == username).limit(1)
    ) is not None
