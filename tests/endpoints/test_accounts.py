from __future__ import annotations

from pathlib import Path

import bcrypt
import paramiko
import pytest

from daemon.auth import passwords
from daemon.auth.accounts import Account, Authenticator, MemoryAuthenticator
from daemon.auth.passwords import hash_password, verify_password


def test_a_hashed_password_verifies_and_a_wrong_one_does_not() -> None:
    stored = hash_password("correct horse", rounds=4)
    assert stored.startswith("bcrypt-sha256$$2b$04$")
    assert verify_password("correct horse", stored, rounds=4)
    assert not verify_password("correct hors", stored, rounds=4)


def test_passwords_longer_than_bcrypts_72_bytes_are_not_truncated() -> None:
    long = "x" * 100
    stored = hash_password(long, rounds=4)
    assert verify_password(long, stored, rounds=4)
    assert not verify_password("x" * 99, stored, rounds=4)


def test_plain_bcrypt_hashes_such_as_htpasswd_makes_are_accepted() -> None:
    stored = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    assert verify_password("pw", stored, rounds=4)
    assert not verify_password("nope", stored, rounds=4)


def test_a_corrupt_stored_hash_is_a_failed_login_not_a_crash() -> None:
    assert not verify_password("pw", "bcrypt-sha256$garbage", rounds=4)


def test_an_unknown_user_still_spends_a_bcrypt_check(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    auth = MemoryAuthenticator(rounds=4)
    auth.add("known", source_id=1, root=tmp_path, password="pw")
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counting)
    assert auth.check_password("nobody", "pw") is None
    assert auth.check_password("known", "wrong") is None
    assert len(calls) == 2
    # same cost for both, so timing does not tell which users exist
    assert calls[0][:7] == calls[1][:7] == b"$2b$04$"


def test_memory_authenticator_returns_the_account_for_good_credentials(tmp_path: Path) -> None:
    auth = MemoryAuthenticator(rounds=4)
    other = paramiko.ECDSAKey.generate()
    mine = paramiko.ECDSAKey.generate()
    auth.add("u", source_id=3, root=tmp_path, password="pw",
             keys=[f"{mine.get_name()} {mine.get_base64()} me@host"])
    assert isinstance(auth, Authenticator)
    assert auth.check_password("u", "pw") == Account("u", 3, tmp_path)
    assert auth.check_password("U", "pw") is None
    assert auth.check_key("u", mine) == Account("u", 3, tmp_path)
    assert auth.check_key("u", other) is None
    assert auth.check_key("nobody", mine) is None
    assert auth.has_keys("u") and not auth.has_keys("nobody")


def test_an_account_without_a_password_cannot_log_in_with_one(tmp_path: Path) -> None:
    auth = MemoryAuthenticator(rounds=4)
    auth.add("keyonly", source_id=1, root=tmp_path)
    assert auth.check_password("keyonly", "") is None
