"""Remote SFTP pull against real paramiko servers on port 0.

Two remote sides: the hosted SftpService (jailed: /results is download-only,
so every remote delete there fails) and a small permissive SFTP server over a
tmp folder, for the delete / move cases the jail does not allow.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from daemon.auth.hostkey import fingerprint, load_or_create_host_key
from daemon.db import migrate, pulled
from daemon.db.engine import make_engine, session_factory
from daemon.db.models import Merchant, PulledFile, Source
from daemon.ingest.endpoints.sftp import SftpService
from daemon.ingest.pull import PullService
from daemon.ingest.sources import SourceInfo
from daemon.settings import MerchantSettings, PullSettings, SourceSettings
from daemon.transports import TransportError
from tests.conftest import Database
from tests.remote_sftp import OLD, OpenServer

from .conftest import PASSWORD, USER, Spool, wait_for

# --- the local side: a source in the database, its folders, the service


@dataclass
class Local:
    sessions: sessionmaker[Session]
    source_id: int
    merchant_id: int
    folder: Path
    spool: Spool
    services: list[PullService] = field(default_factory=list)

    def source(self, **pull: Any) -> SourceInfo:
        settings = SourceSettings(name="wh1", pull=PullSettings(**{"poll_seconds": 0.1, **pull}))
        merchant = MerchantSettings(name="acme", sources=[settings])
        return SourceInfo(id=self.source_id, merchant_id=self.merchant_id, merchant=merchant,
                          settings=settings, folder=self.folder, inbox=self.folder / "inbox",
                          results=self.folder / "results")

    def service(self, source: SourceInfo, **kw: Any) -> PullService:
        svc = PullService([source], self.sessions, self.spool, **kw)
        self.services.append(svc)
        return svc

    def rows(self) -> list[PulledFile]:
        with self.sessions() as s:
            return pulled.fetches(s, self.source_id)


def _local(engine: Any, tmp_path: Path, spool: Spool) -> Iterator[Local]:
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        m = Merchant(name="acme", timezone="UTC", created_at=now)
        s.add(m)
        s.flush()
        src = Source(merchant_id=m.id, name="wh1", kind="warehouse", priority=10, created_at=now)
        s.add(src)
        s.flush()
        ids = (src.id, m.id)
    folder = tmp_path / "local" / "wh1"
    (folder / "inbox").mkdir(parents=True)
    local = Local(sessions, ids[0], ids[1], folder, spool)
    yield local
    for svc in local.services:
        svc.stop(5)


@pytest.fixture
def local(database: Database, tmp_path: Path, spool: Spool) -> Iterator[Local]:
    """On SQLite and on PostgreSQL: for the tests where the records matter."""
    yield from _local(database.engine, tmp_path, spool)


@pytest.fixture
def local_lite(tmp_path: Path, spool: Spool) -> Iterator[Local]:
    """SQLite only: for tests about the wire, not the records."""
    engine = make_engine(f"sqlite:///{tmp_path / 'pull.db'}")
    migrate.upgrade(engine)
    yield from _local(engine, tmp_path, spool)
    engine.dispose()


def open_pull(server: OpenServer, **kw: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "user": "puller", "password": "pw",
            "remote_folder": "/drop", "host_key_fingerprint": fingerprint(server.key), **kw}


def hosted_pull(service: SftpService, **kw: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": service.address[1], "user": USER, "password": PASSWORD,
            "remote_folder": "/results", "host_key_fingerprint": fingerprint(service.host_key),
            **kw}


def put_result(source_root: Path, name: str, data: bytes, mtime: int = OLD) -> Path:
    path = source_root / "results" / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


# --- taking files


def test_a_stable_remote_file_is_fetched_once_and_delivered_with_protocol_pull(
        local: Local, open_server: OpenServer) -> None:
    remote = open_server.put("drop/stock.csv", b"sku,qty\nA,5\n")
    source = local.source(**open_pull(open_server))
    svc = local.service(source)

    first = svc.poll_once(source)
    # the first listing only records
    assert first.unstable == ["/drop/stock.csv"] and first.fetched == []
    second = svc.poll_once(source)
    assert second.fetched == ["/drop/stock.csv"] and second.removed == ["/drop/stock.csv"]
    assert not remote.exists()

    [arrival] = local.spool.arrivals
    assert (arrival.protocol, arrival.original_name) == ("pull", "stock.csv")
    assert arrival.user == "puller"
    assert arrival.source_id == local.source_id
    assert arrival.remote_addr == f"127.0.0.1:{open_server.port}"
    assert local.spool.contents("stock.csv") == b"sku,qty\nA,5\n"
    [row] = local.rows()
    assert (row.remote_path, row.size, row.mtime, row.upload_id) == ("/drop/stock.csv", 12, OLD, 1)
    assert row.remote_removed is True
    assert len(row.sha256) == 64
    assert list(source.staging.iterdir()) == []  # no temporary left behind

    assert svc.poll_once(source).fetched == []
    assert len(local.spool.arrivals) == 1


def test_a_file_still_growing_between_listings_is_not_taken(
        local_lite: Local, open_server: OpenServer) -> None:
    path = open_server.put("drop/stock.csv", b"sku,qty\n")
    source = local_lite.source(**open_pull(open_server))
    svc = local_lite.service(source)
    svc.poll_once(source)
    with path.open("ab") as f:
        f.write(b"A,5\n")
    os.utime(path, (OLD + 1, OLD + 1))
    assert svc.poll_once(source).unstable == ["/drop/stock.csv"]
    assert local_lite.spool.arrivals == []
    assert svc.poll_once(source).fetched == ["/drop/stock.csv"]
    assert local_lite.spool.contents("stock.csv") == b"sku,qty\nA,5\n"


def test_temporary_names_and_folders_are_ignored(
        local_lite: Local, open_server: OpenServer) -> None:
    for name in ("stock.csv.part", "stock.tmp", ".stock.csv", "upload.filepart"):
        open_server.put(f"drop/{name}", b"x")
    (open_server.root / "drop" / "sub").mkdir()
    source = local_lite.source(**open_pull(open_server))
    svc = local_lite.service(source)
    reports = [svc.poll_once(source) for _ in range(3)]
    assert all(r.listed == 0 and r.fetched == [] for r in reports)
    assert local_lite.spool.arrivals == []
    assert len(list((open_server.root / "drop").iterdir())) == 5


@pytest.mark.parametrize("listing_follows", [False, True], ids=["lstat-listing", "stat-listing"])
def test_a_remote_symlink_is_never_fetched(
        local_lite: Local, open_server: OpenServer, tmp_path: Path, listing_follows: bool) -> None:
    """Whether the server lists the link as a link or with its target's attributes."""
    secret = tmp_path / "secret.csv"
    secret.write_bytes(b"sku,qty\nSECRET,9\n")
    os.utime(secret, (OLD, OLD))
    (open_server.root / "drop" / "stock.csv").symlink_to(secret)
    open_server.list_follows_links = listing_follows
    source = local_lite.source(**open_pull(open_server))
    svc = local_lite.service(source)
    with capture_logs() as logs:
        reports = [svc.poll_once(source) for _ in range(3)]
    assert all(r.fetched == [] for r in reports)
    assert local_lite.spool.arrivals == [] and local_lite.rows() == []
    assert not [c for c in open_server.calls if c[0] == "open-read"]
    assert (open_server.root / "drop" / "stock.csv").is_symlink() and secret.exists()
    if listing_follows:  # listed as a file, refused by lstat: said once
        assert reports[1].refused == ["/drop/stock.csv"] == reports[2].refused
        assert [e["what"] for e in logs if e["event"] == "pull_refused"] == ["a symbolic link"]


def test_with_after_move_the_remote_file_goes_to_processed_and_an_existing_name_gets_a_timestamp(
        local_lite: Local, open_server: OpenServer) -> None:
    clock = lambda: datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    open_server.put("drop/stock.csv", b"one\n")
    source = local_lite.source(**open_pull(open_server, after="move"))
    svc = local_lite.service(source, clock=clock)
    svc.poll_once(source)
    assert svc.poll_once(source).removed == ["/drop/stock.csv"]
    processed = open_server.root / "drop" / "processed"
    assert (processed / "stock.csv").read_bytes() == b"one\n"  # the folder was created

    open_server.put("drop/stock.csv", b"two\n", mtime=OLD + 60)  # same name, new contents
    svc.poll_once(source)
    assert svc.poll_once(source).fetched == ["/drop/stock.csv"]
    assert (processed / "stock.csv").read_bytes() == b"one\n"
    assert (processed / "stock.20250304T050607Z.csv").read_bytes() == b"two\n"
    assert not (open_server.root / "drop" / "stock.csv").exists()
    assert [r.remote_removed for r in local_lite.rows()] == [True, True]


def test_a_pull_whose_remote_delete_fails_is_not_fetched_twice(
        local: Local, start_sftp: Callable[..., SftpService], source_root: Path) -> None:
    hosted = start_sftp()
    put_result(source_root, "stock.csv", b"sku,qty\nA,1\n")  # /results: download-only
    source = local.source(**hosted_pull(hosted))
    svc = local.service(source)
    with capture_logs() as logs:
        reports = [svc.poll_once(source) for _ in range(4)]
    assert reports[1].fetched == ["/results/stock.csv"]
    assert reports[1].remove_failed == ["/results/stock.csv"]
    assert [r.fetched for r in reports[2:]] == [[], []]
    assert reports[3].remove_failed == ["/results/stock.csv"]  # the removal is retried
    assert len(local.spool.arrivals) == 1
    assert (source_root / "results" / "stock.csv").exists()
    [row] = local.rows()
    assert row.remote_removed is False and row.upload_id == 1
    warned = [e for e in logs if e["event"] == "pull_remove_failed" and e["log_level"] == "warning"]
    assert len(warned) == 1  # said once, then retried quietly

    # a restart forgets the memory, not the database
    again = local.service(source)
    again.poll_once(source)
    assert again.poll_once(source).known == ["/results/stock.csv"]
    assert len(local.spool.arrivals) == 1


def test_a_failed_removal_is_retried_on_a_later_poll_and_then_recorded(
        local: Local, open_server: OpenServer) -> None:
    open_server.put("drop/stock.csv", b"x\n")
    open_server.deny_remove = True
    source = local.source(**open_pull(open_server))
    svc = local.service(source)
    svc.poll_once(source)
    assert svc.poll_once(source).remove_failed == ["/drop/stock.csv"]
    assert local.rows()[0].remote_removed is False
    open_server.deny_remove = False
    assert svc.poll_once(source).removed == ["/drop/stock.csv"]
    assert local.rows()[0].remote_removed is True
    assert not (open_server.root / "drop" / "stock.csv").exists()
    assert len(local.spool.arrivals) == 1


def test_the_same_name_with_new_contents_is_fetched_again(
        local_lite: Local, start_sftp: Callable[..., SftpService], source_root: Path) -> None:
    hosted = start_sftp()
    put_result(source_root, "stock.csv", b"A,1\n")
    source = local_lite.source(**hosted_pull(hosted))
    svc = local_lite.service(source)
    svc.poll_once(source)
    svc.poll_once(source)
    put_result(source_root, "stock.csv", b"A,22\n", mtime=OLD + 100)
    svc.poll_once(source)
    assert svc.poll_once(source).fetched == ["/results/stock.csv"]
    assert [a.original_name for a in local_lite.spool.arrivals] == ["stock.csv", "stock.csv"]
    assert [(r.size, r.mtime) for r in local_lite.rows()] == [(4, OLD), (5, OLD + 100)]


def test_a_file_intake_refuses_is_not_recorded_and_is_taken_on_a_later_poll(
        local_lite: Local, open_server: OpenServer) -> None:
    open_server.put("drop/stock.csv", b"x\n")
    source = local_lite.source(**open_pull(open_server))
    svc = local_lite.service(source)
    svc.poll_once(source)
    local_lite.spool.fail = True
    with pytest.raises(TransportError, match="intake did not take"):
        svc.poll_once(source)
    assert local_lite.rows() == [] and list(source.staging.iterdir()) == []
    assert (open_server.root / "drop" / "stock.csv").exists()
    local_lite.spool.fail = False
    assert svc.poll_once(source).fetched == ["/drop/stock.csv"]


# --- host keys and logins


def test_a_wrong_host_key_fingerprint_refuses_to_connect_and_fetches_nothing(
        local_lite: Local, start_sftp: Callable[..., SftpService], source_root: Path) -> None:
    hosted = start_sftp()
    put_result(source_root, "stock.csv", b"x\n")
    wrong = "SHA256:" + "A" * 43
    source = local_lite.source(**hosted_pull(hosted, host_key_fingerprint=wrong))
    svc = local_lite.service(source)
    with capture_logs() as logs, pytest.raises(TransportError, match="not the pinned one"):
        svc.poll_once(source)
    [event] = [e for e in logs if e["event"] == "pull_host_key_rejected"]
    assert event["expected"] == [wrong]
    assert event["offered"] == fingerprint(hosted.host_key)
    assert local_lite.spool.arrivals == []


def test_an_empty_known_hosts_refuses_to_connect(
        local_lite: Local, start_sftp: Callable[..., SftpService], tmp_path: Path) -> None:
    hosted = start_sftp()
    known = tmp_path / "known_hosts"
    known.write_text("")
    source = local_lite.source(**hosted_pull(hosted, host_key_fingerprint=None, known_hosts=known))
    with capture_logs() as logs, pytest.raises(TransportError, match="none known"):
        local_lite.service(source).poll_once(source)
    [event] = [e for e in logs if e["event"] == "pull_host_key_rejected"]
    assert event["expected"] == [] and event["offered"] == fingerprint(hosted.host_key)


def test_known_hosts_pins_by_bracketed_host_and_port_and_a_changed_key_is_refused(
        local_lite: Local, start_sftp: Callable[..., SftpService], source_root: Path,
        tmp_path: Path) -> None:
    hosted = start_sftp()
    port = hosted.address[1]
    key = hosted.host_key
    other = load_or_create_host_key(tmp_path / "other-key")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n"
                     # an entry for port 22 is not one for this port
                     f"127.0.0.1 {other.get_name()} {other.get_base64()}\n")
    put_result(source_root, "stock.csv", b"x\n")
    source = local_lite.source(**hosted_pull(hosted, host_key_fingerprint=None, known_hosts=known))
    svc = local_lite.service(source)
    svc.poll_once(source)
    assert svc.poll_once(source).fetched == ["/results/stock.csv"]

    known.write_text(f"[127.0.0.1]:{port} {other.get_name()} {other.get_base64()}\n")  # "changed"
    with pytest.raises(TransportError, match="not the pinned one"):
        svc.poll_once(source)


def test_key_auth_works_with_an_ed25519_key(
        local_lite: Local, start_sftp: Callable[..., SftpService], source_root: Path,
        client_key: tuple[paramiko.Ed25519Key, Path]) -> None:
    hosted = start_sftp()
    put_result(source_root, "stock.csv", b"x\n")
    source = local_lite.source(**hosted_pull(hosted, password=None, key_file=client_key[1]))
    svc = local_lite.service(source)
    svc.poll_once(source)
    assert svc.poll_once(source).fetched == ["/results/stock.csv"]


def test_key_auth_works_with_an_encrypted_ecdsa_key_and_its_passphrase_from_env(
        local_lite: Local, start_sftp: Callable[..., SftpService], source_root: Path, accounts: Any,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"open sesame"))
    key_path = tmp_path / "id_ecdsa"
    key_path.write_bytes(pem)
    key = paramiko.ECDSAKey.from_private_key_file(str(key_path), password="open sesame")
    accounts.add("keyed", source_id=7, root=source_root, keys=[key])
    monkeypatch.setenv("PULL_KEY_PASS", "open sesame")
    hosted = start_sftp()
    put_result(source_root, "stock.csv", b"x\n")
    source = local_lite.source(**hosted_pull(hosted, user="keyed", password=None, key_file=key_path,
                                             key_passphrase_env="PULL_KEY_PASS"))
    svc = local_lite.service(source)
    svc.poll_once(source)
    assert svc.poll_once(source).fetched == ["/results/stock.csv"]


def test_a_wrong_password_is_a_failed_poll(
        local_lite: Local, start_sftp: Callable[..., SftpService]) -> None:
    hosted = start_sftp()
    source = local_lite.source(**hosted_pull(hosted, password="nope"))
    with pytest.raises(TransportError, match="authentication failed"):
        local_lite.service(source).poll_once(source)


# --- the service: backoff, recovery, stopping


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def test_a_server_that_is_down_is_retried_with_backoff_and_fetched_from_once_it_is_up(
        local_lite: Local, start_sftp: Callable[..., SftpService], source_root: Path,
        tmp_path: Path) -> None:
    port = _free_port()
    host_key_path = tmp_path / "hostkey" / "ssh_host_ed25519_key"
    key = load_or_create_host_key(host_key_path)
    put_result(source_root, "stock.csv", b"sku,qty\nA,3\n")
    source = local_lite.source(host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                               remote_folder="/results", host_key_fingerprint=fingerprint(key),
                               poll_seconds=0.05)
    svc = local_lite.service(source)
    with capture_logs() as logs:
        svc.start()
        wait_for(lambda: sum(e["event"] == "pull_failed" for e in logs) >= 3, what="failed polls")
        svc.check()  # still running
        failed = [e for e in logs if e["event"] == "pull_failed"]
        assert "cannot connect" in failed[0]["reason"]
        assert [e["retry_in"] for e in failed[:3]] == [0.1, 0.2, 0.4]

        start_sftp(port=port, host_key_path=host_key_path)
        local_lite.spool.wait(1)
        svc.check()
        started = time.monotonic()
        svc.stop(5)
        assert time.monotonic() - started < 2
    assert any(e["event"] == "pull_recovered" for e in logs)
    assert local_lite.spool.contents("stock.csv") == b"sku,qty\nA,3\n"


def test_backoff_doubles_up_to_a_cap() -> None:
    svc = PullService([], None, None, max_backoff=900)  # type: ignore[arg-type]
    assert [svc.backoff(60, n) for n in range(5)] == [60, 120, 240, 480, 900]
    assert svc.backoff(60, 100) == 900
    assert svc.backoff(3600, 3) == 3600  # a long poll interval is never shortened


def test_stop_is_prompt_even_with_a_long_poll_interval(
        local_lite: Local, open_server: OpenServer) -> None:
    source = local_lite.source(**open_pull(open_server, poll_seconds=3600))
    svc = local_lite.service(source)
    with capture_logs():
        svc.start()
        wait_for(lambda: svc._states[source.id].previous is not None, what="the first listing")
        started = time.monotonic()
        svc.stop(5)
    assert time.monotonic() - started < 1
    svc.check()  # a stopped service is not a dead one


def test_only_sources_with_pull_settings_are_served(
        local_lite: Local, open_server: OpenServer) -> None:
    with_pull = local_lite.source(**open_pull(open_server))
    plain = SourceInfo(id=99, merchant_id=1, merchant=with_pull.merchant,
                       settings=SourceSettings(name="plain"), folder=local_lite.folder,
                       inbox=local_lite.folder, results=local_lite.folder)
    svc = PullService([with_pull, plain], local_lite.sessions, local_lite.spool)
    assert svc.sources == [with_pull]
