"""The SFTP server's identity: one ed25519 key, made on first start and kept."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def load_or_create_host_key(path: Path) -> paramiko.Ed25519Key:
    """Load the key at ``path``, generating it (0600, OpenSSH format) if absent.

    Senders pin the host key; a new key on every restart would break them, so
    the file is written once and then only read.
    """
    path = Path(path)
    if not path.exists():
        _create(path)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def _create(path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # write under a temp name created 0600 and rename: a crash never leaves a
    # half-written key, and the secret is never readable by others even briefly
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # O_CREAT's mode is cut by the umask only, but be sure
    try:
        os.link(tmp, path)  # fails if another process created it meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    pub_path = path.with_name(path.name + ".pub")
    if not pub_path.exists():
        pub_path.write_bytes(pub + b"\n")


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
    return blob_fingerprint(key.asbytes())


def blob_fingerprint(blob: bytes) -> str:
    """The same for a raw public-key blob (as stored for an account's keys)."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
