"""Password hashing for the endpoints' accounts: bcrypt over a SHA-256 pre-hash.

Only these hashes are ever stored; a plain-text or reversible password never
reaches the database.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

import bcrypt

DEFAULT_ROUNDS = 12
# Our own hashes pre-hash with SHA-256 so that passwords longer than bcrypt's
# 72-byte limit are neither truncated nor rejected (bcrypt>=5 raises on them).
_PREFIX = "bcrypt-sha256$"


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
