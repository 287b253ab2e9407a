"""Who may log in to the hosted endpoints, and where their files go.

The receivers only see the :class:`Authenticator` protocol; the lead backs it
with the database later. :class:`MemoryAuthenticator` is the in-memory
implementation used by tests (and by anything that needs a fixed account list).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import bcrypt
import paramiko

DEFAULT_ROUNDS = 12
# Our own hashes pre-hash with SHA-256 so that passwords longer than bcrypt's
# 72-byte limit are neither truncated nor rejected (bcrypt>=5 raises on them).
_PREFIX = "bcrypt-sha256$"


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


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, *, rounds: int = DEFAULT_ROUNDS) -> str:
    """A string safe to store: ``bcrypt-sha256$<bcrypt hash>``."""
    hashed = bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds))
    return _PREFIX + hashed.decode("ascii")


@lru_cache(maxsize=8)
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(b"stockdrop-no-such-user", bcrypt.gensalt(rounds=rounds))


def burn_password_time(password: str, rounds: int = DEFAULT_ROUNDS) -> None:
    """Spend what a real check costs, so unknown users are not told apart by timing."""
    bcrypt.checkpw(_prehash(password), _dummy_hash(rounds))


def verify_password(password: str, hashed: str | None, *, rounds: int = DEFAULT_ROUNDS) -> bool:
    """Constant-time check of ``password`` against a stored hash.

    ``hashed=None`` (no such user, or no password set) still spends the bcrypt
    time at ``rounds`` and returns False. Plain ``$2b$`` hashes (e.g. made by
    ``htpasswd -B``) are accepted for passwords bcrypt can take.
    """
    if hashed is None:
        burn_password_time(password, rounds)
        return False
    try:
        if hashed.startswith(_PREFIX):
            return bcrypt.checkpw(_prehash(password), hashed[len(_PREFIX) :].encode("ascii"))
        raw = password.encode("utf-8")
        if hashed.startswith(("$2a$", "$2b$", "$2y$")) and len(raw) <= 72:
            return bcrypt.checkpw(raw, hashed.encode("ascii"))
    except ValueError:  # a corrupt stored hash is a failed login, not a crash
        pass
    burn_password_time(password, rounds)
    return False


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
