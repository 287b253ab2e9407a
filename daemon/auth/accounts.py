"""Who may log in to the hosted endpoints, and where their files go.

The endpoints only see the :class:`Authenticator` protocol. The daemon's is
:class:`DbAuthenticator`, backed by the accounts tables;
:class:`MemoryAuthenticator` holds a fixed list in memory (tests, benchmarks).
"""

from __future__ import annotations

import base64
import hmac
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import paramiko
from sqlalchemy.orm import Session, sessionmaker

from daemon.auth.passwords import DEFAULT_ROUNDS, burn_password_time, hash_password, verify_password
from daemon.db import accounts as rows


@dataclass(frozen=True)
class Account:
    """A logged-in sender: which source its files belong to and its folder."""

    username: str
    source_id: int | None
    root: Path
    # An account for a market's order or cancellation folder instead of a source.
    market_id: int | None = None
    kind: str = "feed"


@runtime_checkable
class Authenticator(Protocol):
    def check_password(self, username: str, password: str) -> Account | None: ...

    def check_key(self, username: str, key: paramiko.PKey) -> Account | None: ...

    def has_keys(self, username: str) -> bool: ...

    def knows(self, username: str) -> bool:
        """Whether an account of that name exists (a failed login scores less if so)."""
        ...


def public_key_blob(key: str | paramiko.PKey) -> tuple[str, bytes]:
    """(key type, raw blob) of an OpenSSH public key line or a paramiko key."""
    if isinstance(key, paramiko.PKey):
        return key.get_name(), key.asbytes()
    parts = key.strip().split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line: expected '<type> <base64> [comment]'")
    return parts[0], base64.b64decode(parts[1], validate=True)


@dataclass
class _Entry:
    account: Account
    password_hash: str | None
    keys: list[tuple[str, bytes]]


class MemoryAuthenticator:
    """Accounts held in memory; thread-safe (the servers call from many threads)."""

    def __init__(self, *, rounds: int = DEFAULT_ROUNDS) -> None:
        self._rounds = rounds
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def add(
        self,
        username: str,
        *,
        source_id: int,
        root: Path,
        password: str | None = None,
        keys: Iterable[str | paramiko.PKey] = (),
    ) -> Account:
        account = Account(username=username, source_id=source_id, root=Path(root))
        pw_hash = hash_password(password, rounds=self._rounds) if password is not None else None
        entry = _Entry(account, pw_hash, [public_key_blob(k) for k in keys])
        with self._lock:
            self._entries[username] = entry
        return account

    def remove(self, username: str) -> None:
        with self._lock:
            self._entries.pop(username, None)

    def _get(self, username: str) -> _Entry | None:
        with self._lock:
            return self._entries.get(username)

    def check_password(self, username: str, password: str) -> Account | None:
        entry = self._get(username)
        stored = entry.password_hash if entry else None
        ok = verify_password(password, stored, rounds=self._rounds)
        return entry.account if ok and entry else None

    def check_key(self, username: str, key: paramiko.PKey) -> Account | None:
        entry = self._get(username)
        if entry is None:
            return None
        kind, blob = public_key_blob(key)
        # compare every key, no early exit: which key matched is nobody's business
        found = False
        for k_kind, k_blob in entry.keys:
            found |= k_kind == kind and hmac.compare_digest(k_blob, blob)
        return entry.account if found else None

    def has_keys(self, username: str) -> bool:
        entry = self._get(username)
        return bool(entry and entry.keys)

    def knows(self, username: str) -> bool:
        return self._get(username) is not None


class Folders(Protocol):
    """Where an account's files go, by what it is jailed to (``ingest.sources.SourceBook``)."""

    def source_root(self, source_id: int, kind: str = "feed") -> Path | None: ...

    def market_root(self, market_id: int, kind: str) -> Path | None: ...


class DbAuthenticator:
    """The endpoints' Authenticator, backed by the accounts tables.

    Lookups happen per login, so an account added or removed with the CLI
    takes effect on the next login without a restart.
    """

    def __init__(self, sessions: sessionmaker[Session], folders: Folders) -> None:
        self._sessions = sessions
        self._folders = folders

    def _lookup(self, username: str) -> tuple[rows.Login | None, Account | None]:
        with self._sessions() as session:
            login = rows.find_login(session, username)
        if login is None:
            return None, None
        if login.market_id is not None:
            root = self._folders.market_root(login.market_id, login.kind)
            if root is None:
                return login, None  # its market is no longer known: no login
            return login, Account(username=username, source_id=None, root=root,
                                  market_id=login.market_id, kind=login.kind)
        root = self._folders.source_root(login.source_id, login.kind) if login.source_id is not None else None
        if root is None:
            return login, None  # its source (or its orders export) is no longer configured: no login
        return login, Account(username=username, source_id=login.source_id, root=root, kind=login.kind)

    def check_password(self, username: str, password: str) -> Account | None:
        login, account = self._lookup(username)
        if login is None or account is None:
            burn_password_time(password)
            return None
        return account if verify_password(password, login.password_hash) else None

    def check_key(self, username: str, key: paramiko.PKey) -> Account | None:
        login, account = self._lookup(username)
        if login is None or account is None:
            return None
        with self._sessions() as session:
            found = rows.has_key(session, login.id, base64.b64encode(key.asbytes()).decode())
        return account if found else None

    def has_keys(self, username: str) -> bool:
        with self._sessions() as session:
            return rows.has_any_key(session, username)

    def knows(self, username: str) -> bool:
        with self._sessions() as session:
            return rows.find_login(session, username) is not None
