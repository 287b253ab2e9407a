"""Fixtures for the receiver tests: real servers on port 0, real folders."""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization

from daemon.auth.accounts import MemoryAuthenticator
from daemon.auth.bans import BanList, BanPolicy
from daemon.ingest.arrival import Arrival
from daemon.ingest.endpoints.ftp import FtpConfig, FtpService
from daemon.ingest.endpoints.sftp import SftpConfig, SftpService
from tests.helpers import self_signed_cert

USER, PASSWORD, SOURCE_ID = "wh1", "s3cret-pass", 7
WAIT = 30.0  # generous: the CI box has two loaded cores


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every thread a test starts is gone after it, and no descriptors stay open."""
    before = set(threading.enumerate())
    fds_before = _fd_count()
    yield
    deadline = time.monotonic() + WAIT
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads left running: {extra}"
    gc.collect()
    wait_for(lambda: _fd_count() <= fds_before, timeout=5, what="file descriptors to close")


class Spool:
    """A deliver() that claims each file by renaming it into a spool folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrivals: list[Arrival] = []
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, arrival: Arrival) -> int:
        if self.fail:
            raise RuntimeError("intake is down")
        with self._lock:
            upload_id = len(self.arrivals) + 1
            dest = self.folder / f"{upload_id:04d}-{arrival.original_name}"
            os.rename(arrival.path, dest)  # the claim: a rename on the same filesystem
            self.arrivals.append(arrival)
            return upload_id

    def contents(self, name: str) -> bytes:
        [path] = [p for p in self.folder.iterdir() if p.name.endswith("-" + name)]
        return path.read_bytes()

    def wait(self, count: int) -> list[Arrival]:
        wait_for(lambda: len(self.arrivals) >= count, what=f"{count} arrival(s)")
        return self.arrivals


@pytest.fixture
def source_root(tmp_path: Path) -> Path:
    root = tmp_path / "sources" / "wh1"
    (root / "inbox").mkdir(parents=True)
    (root / "results").mkdir()
    return root


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    folder = tmp_path / "spool"
    folder.mkdir()
    return Spool(folder)


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[paramiko.Ed25519Key, Path]:
    """A client ed25519 key, also written as an OpenSSH file for `sftp -i`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = tmp_path_factory.mktemp("client-key")
    path = folder / "id_ed25519"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return paramiko.Ed25519Key.from_private_key_file(str(path)), path


@pytest.fixture
def accounts(source_root: Path, client_key: tuple[paramiko.Ed25519Key, Path]) -> MemoryAuthenticator:
    auth = MemoryAuthenticator(rounds=4)  # cheap bcrypt: tests, not production
    key = client_key[0]
    auth.add(USER, source_id=SOURCE_ID, root=source_root, password=PASSWORD,
             keys=[f"{key.get_name()} {key.get_base64()} test"])
    return auth


@pytest.fixture
def bans(request: pytest.FixtureRequest) -> BanList:
    """The endpoints' ban list; ``@pytest.mark.ban_policy(threshold=...)`` changes its rules."""
    marker = request.node.get_closest_marker("ban_policy")
    values: dict[str, Any] = {"threshold": 5, "window_s": 300, "ban_s": 900, **(marker.kwargs if marker else {})}
    return BanList(BanPolicy(**values))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1."""
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


FTP_TEST_DEFAULTS = {"host": "127.0.0.1", "port": 0, "auth_failed_delay_s": 0.05, "idle_timeout": 60}


@pytest.fixture
def start_ftp(accounts: MemoryAuthenticator, bans: BanList,
              spool: Spool) -> Iterator[Callable[..., FtpService]]:
    started: list[FtpService] = []

    def start(**overrides: object) -> FtpService:
        config = FtpConfig(**{**FTP_TEST_DEFAULTS, **overrides})  # type: ignore[arg-type]
        service = FtpService(config, accounts, bans, spool)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(timeout=WAIT)


@pytest.fixture
def ftp_service(start_ftp: Callable[..., FtpService]) -> FtpService:
    return start_ftp()


@pytest.fixture
def start_sftp(tmp_path: Path, accounts: MemoryAuthenticator, bans: BanList,
               spool: Spool) -> Iterator[Callable[..., SftpService]]:
    started: list[SftpService] = []

    def start(**overrides: object) -> SftpService:
        values: dict[str, object] = {"host": "127.0.0.1", "port": 0,
                                         "host_key_path": tmp_path / "hostkey" / "ssh_host_ed25519_key"}
        values.update(overrides)
        service = SftpService(SftpConfig(**values), accounts, bans, spool)  # type: ignore[arg-type]
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(timeout=WAIT)


@pytest.fixture
def sftp_service(start_sftp: Callable[..., SftpService]) -> SftpService:
    return start_sftp()


def have(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed")
    return path


def leftovers(root: Path) -> list[str]:
    """Files anywhere in a source folder except /results."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "results"
    )
