"""Small helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from daemon.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether ``cond`` came true within ``timeout`` seconds (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> CliResult:
    """Run the CLI in this process, as a user would from a shell."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def stockdrop_subprocess(*args: str | Path, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "daemon", *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def write_config(directory: Path, body: str, *, database_url: str | None = None) -> Path:
    """A config file with an optional [database] url prepended."""
    directory.mkdir(parents=True, exist_ok=True)
    text = 'data_dir = "data"\n'
    if database_url:
        text += f'[database]\nurl = "{database_url}"\n'
    path = directory / "stockdrop.toml"
    path.write_text(text + body, encoding="utf-8")
    return path


ONE_WAREHOUSE = """
[[merchants]]
name = "acme"
timezone = "UTC"

[[merchants.sources]]
name = "wh1"
kind = "warehouse"
priority = 10
[merchants.sources.feed]
unknown_sku = "create"  # these tests bring their own SKUs
"""


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem): a self-signed certificate for localhost / 127.0.0.1, for TLS servers in tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return cert_path, key_path
