from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paramiko

from daemon.auth.hostkey import fingerprint, load_or_create_host_key


def test_the_host_key_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ssh_host_ed25519_key"
    first = load_or_create_host_key(path)
    assert isinstance(first, paramiko.Ed25519Key)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    second = load_or_create_host_key(path)
    assert second.asbytes() == first.asbytes()
    assert fingerprint(second) == fingerprint(first)
    assert not list(path.parent.glob("*.new"))


def test_the_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    path = tmp_path / "ssh_host_ed25519_key"
    key = load_or_create_host_key(path)
    fp = fingerprint(key)
    assert fp.startswith("SHA256:") and not fp.endswith("=")
    keygen = shutil.which("ssh-keygen")
    if keygen:
        out = subprocess.run([keygen, "-lf", str(path)], capture_output=True, text=True,
                             check=True, timeout=30).stdout
        assert fp in out
