"""FTP/SFTP accounts in the database, and the authenticator the endpoints ask.

Only bcrypt hashes are stored. Lookups happen per login, so an account added
or removed with the CLI takes effect on the next login without a restart.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import paramiko
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from daemon.db.models import Account as AccountRow
from daemon.db.models import AccountKey, MarketRecord, Merchant, Source
from daemon.errors import NotFound, UserError
from daemon.auth.accounts import (
    Account,
    burn_password_time,
    hash_password,
    public_key_blob,
    verify_password,
)
from daemon.auth.hostkey import blob_fingerprint
from daemon.ingest.sources import SourceBook


def _account(session: Session, username: str) -> AccountRow:
    row = session.scalar(select(AccountRow).where(AccountRow.username == username))
    if row is None:
        raise NotFound(f"no account named {username!r}")
    return row


def add_account(session: Session, source: Source | None, username: str, password: str | None,
                now: datetime, *, market: MarketRecord | None = None, kind: str = "feed") -> AccountRow:
    """An account for a source's folder, or (``market``, ``kind``) a market's
    orders or cancellations folder."""
    if session.scalar(select(AccountRow.id).where(AccountRow.username == username)) is not None:
        raise UserError(f"an account named {username!r} exists already")
    if (source is None) == (market is None):
        raise UserError("an account belongs to one source or one market")
    row = AccountRow(source_id=source.id if source else None, market_id=market.id if market else None,
                     kind=kind if market else "feed", username=username, created_at=now,
                     password_hash=hash_password(password) if password else None)
    session.add(row)
    session.flush()
    return row


def set_password(session: Session, username: str, password: str) -> None:
    _account(session, username).password_hash = hash_password(password)


def remove_account(session: Session, username: str) -> None:
    session.delete(_account(session, username))


def add_key(session: Session, username: str, line: str, now: datetime) -> str:
    """Add an OpenSSH public key line; returns its fingerprint."""
    row = _account(session, username)
    try:
        key_type, blob = public_key_blob(line)
    except (ValueError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        raise UserError(f"not an OpenSSH public key: {exc}") from None
    b64 = base64.b64encode(blob).decode()
    if session.scalar(select(AccountKey.id).where(AccountKey.account_id == row.id,
                                                  AccountKey.key_blob == b64)) is not None:
        raise UserError("this key is already on the account")
    parts = line.strip().split(None, 2)
    session.add(AccountKey(account_id=row.id, key_type=key_type, key_blob=b64,
                           comment=parts[2] if len(parts) > 2 else None,
                           fingerprint=blob_fingerprint(blob), created_at=now))
    return blob_fingerprint(blob)


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
        folder = s if s is not None else f"market:{mk}/{row.kind}"
        out.append(AccountInfo(row.username, m, folder, row.password_hash is not None, list(keys),
                               row.created_at))
    return out


class DbAuthenticator:
    """The endpoints' Authenticator, backed by the accounts tables."""

    def __init__(self, sessions: sessionmaker[Session], book: SourceBook) -> None:
        self._sessions = sessions
        self._book = book

    def _lookup(self, username: str) -> tuple[AccountRow | None, Account | None]:
        with self._sessions() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.username == username,
                                                          AccountRow.disabled.is_(False)))
            if row is None:
                return None, None
            session.expunge(row)
        if row.market_id is not None:
            market = self._book.market(row.market_id)
            if market is None:
                return row, None  # its market is no longer known: no login
            return row, Account(username=username, source_id=None, root=market.kind_folder(row.kind),
                                market_id=market.id, kind=row.kind)
        info = self._book.get(row.source_id) if row.source_id is not None else None
        if info is None:
            return row, None  # its source is no longer configured: no login
        return row, Account(username=username, source_id=info.id, root=info.folder)

    def check_password(self, username: str, password: str) -> Account | None:
        row, account = self._lookup(username)
        if row is None or account is None:
            burn_password_time(password)
            return None
        return account if verify_password(password, row.password_hash) else None

    def check_key(self, username: str, key: paramiko.PKey) -> Account | None:
        row, account = self._lookup(username)
        if row is None or account is None:
            return None
        offered = base64.b64encode(key.asbytes()).decode()
        with self._sessions() as session:
            found = session.scalar(select(AccountKey.id).where(AccountKey.account_id == row.id,
                                                               AccountKey.key_blob == offered))
        return account if found is not None else None

    def has_keys(self, username: str) -> bool:
        with self._sessions() as session:
            return session.scalar(
                select(AccountKey.id).join(AccountRow).where(AccountRow.username == username).limit(1)
            ) is not None
