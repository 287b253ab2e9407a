"""The export destinations against real servers: a folder on this machine, and
pyftpdlib FTP/FTPS servers on port 0 (some of them misbehaving on purpose)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from daemon.transports import TransportError
from daemon.transports.destination import PART_SUFFIX, Destination, LoginRefused
from daemon.transports.folder import FolderDestination
from daemon.transports.ftp import FtpDestination

USER, PASSWORD = "market", "pa55-w0rd-never-shown"
NAME, MARKER = "stock.csv", "stock.csv.done"
# Bytes ASCII mode would change (CRLF, LF, NUL, high bytes), more than one socket read.
DATA = b"sku;qty\r\n001;5\n\x00\xff\xfe" + os.urandom(300_000) + b"\r\n"


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the FTP servers -------------------------------------------------------------------------


class Server:
    """A pyftpdlib server on 127.0.0.1:0 with its own IO loop, served from a thread."""

    def __init__(self, home: Path, handler: type = FTPHandler, port: int = 0, **attrs: Any) -> None:
        self.home = home
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(home), perm="elradfmwMT")
        cls = type(f"Test{handler.__name__}", (handler,), {
            "authorizer": authorizer,
            "auth_failed_timeout": 0,  # answer a wrong password at once
            "timeout": 30,
            **attrs,
        })
        self.server = FTPServer(("127.0.0.1", port), cls, ioloop=IOLoop())
        self.port: int = self.server.address[1]
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"test-ftp-{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        except BaseException as exc:  # noqa: BLE001 - stop() reports it
            self._error = exc
        finally:
            self.server.close_all()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the FTP server thread did not stop"
        assert self._error is None, f"the FTP server thread died: {self._error!r}"

    def destination(self, **overrides: Any) -> FtpDestination:
        values: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "user": USER, "password": PASSWORD,
                                  "folder": "out", "timeout_seconds": 10.0}
        values.update(overrides)
        return FtpDestination(**values)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The FTP user's home, with the market's folder "out" in it."""
    folder = tmp_path / "home"
    (folder / "out").mkdir(parents=True)
    return folder


@pytest.fixture
def start_server(home: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []
    before = set(threading.enumerate())

    def start(handler: type = FTPHandler, port: int = 0, **attrs: Any) -> Server:
        server = Server(home, handler, port, **attrs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_attrs(tls_files: tuple[Path, Path]) -> dict[str, Any]:
    """An FTPS server that refuses plain control and plain data connections: a delivery
    through it proves AUTH TLS and PROT P were both used."""
    cert, key = tls_files
    return {"certfile": str(cert), "keyfile": str(key), "ssl_context": None,
            "tls_control_required": True, "tls_data_required": True}


class DroppingDTP(DTPHandler):
    """The server goes away mid-upload: after the first 64 KiB both connections are closed."""

    def handle_read(self) -> None:
        super().handle_read()
        if not self._closed and self.tot_bytes_received >= 64 * 1024:
            self.cmd_channel.close()

    handle_read_event = handle_read  # pyftpdlib calls the alias, bound to its own handle_read


class TruncatingDTP(DTPHandler):
    """A server that loses the last byte of every upload and still says 226."""

    def close(self) -> None:
        f = self.file_obj
        if self.receive and self.transfer_finished and f is not None and not f.closed:
            f.flush()
            f.truncate(max(0, f.tell() - 1))
        super().close()


class NoOverwriteHandler(FTPHandler):
    """A server that refuses RNTO onto a name that exists (as some Windows servers do)."""

    def ftp_RNTO(self, path: str) -> object:
        if getattr(self, "_rnfr", None) and self.fs.lexists(path):
            self._rnfr = None
            self.respond("550 Cannot rename: the target file exists.")
            return None
        return super().ftp_RNTO(path)


# --- the folder ------------------------------------------------------------------------------


def test_a_folder_gets_the_bytes_exactly_then_the_marker_and_no_part(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "feeds" / "market"  # missing, parents too: created
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    destination: Destination = FolderDestination(target)
    destination.deliver(NAME, DATA, done_marker=MARKER)

    assert (target / NAME).read_bytes() == DATA
    assert (target / MARKER).read_bytes() == b""
    assert listing(target) == [NAME, MARKER]
    # each by a rename of its .part, the marker after the file
    assert renames == [(NAME + PART_SUFFIX, NAME), (MARKER + PART_SUFFIX, MARKER)]
    assert destination.describe() == str(target)


def test_a_folder_retry_of_the_same_delivery_succeeds(tmp_path: Path) -> None:
    destination = FolderDestination(tmp_path)
    destination.deliver(NAME, DATA, done_marker=MARKER)
    destination.deliver(NAME, DATA, done_marker=MARKER)  # the retry after a crash before the record
    assert (tmp_path / NAME).read_bytes() == DATA
    assert listing(tmp_path) == [NAME, MARKER]


def test_a_folder_redelivery_replaces_the_file_without_ever_removing_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / NAME
    final.write_bytes(b"old bytes\n")
    old_inode = final.stat().st_ino
    seen_at_rename: list[bytes] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        if Path(dst) == final:
            seen_at_rename.append(final.read_bytes())  # still there, still whole, up to the rename
        real_replace(src, dst)

    def no_removal(path: Any, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{path} was removed")

    with open(final, "rb") as old, monkeypatch.context() as patched:
        patched.setattr(os, "replace", spy)
        patched.setattr(os, "unlink", no_removal)
        patched.setattr(os, "remove", no_removal)
        FolderDestination(tmp_path).deliver(NAME, b"new bytes, longer\n")
        assert old.read() == b"old bytes\n"  # the old file was replaced, not rewritten in place
    assert seen_at_rename == [b"old bytes\n"]
    assert final.read_bytes() == b"new bytes, longer\n"
    assert final.stat().st_ino != old_inode
    assert listing(tmp_path) == [NAME]


def test_a_folder_that_cannot_be_made_is_a_transport_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(TransportError, match=f"{blocker}.*Not a directory"):
        FolderDestination(blocker / "feeds").deliver(NAME, DATA)


def test_a_name_that_is_a_path_is_refused(tmp_path: Path) -> None:
    for name in ("../escape.csv", "a/b.csv", "", "..", "x\r\nDELE y"):
        with pytest.raises(ValueError, match="plain file name"):
            FolderDestination(tmp_path).deliver(name, DATA)
        with pytest.raises(ValueError, match="plain file name"):
            FtpDestination("127.0.0.1", 21, USER, PASSWORD, "out").deliver(name, DATA)
    assert listing(tmp_path) == []


# --- FTP -------------------------------------------------------------------------------------


def test_ftp_delivers_exactly_with_the_marker_and_no_part(start_server: Callable[..., Server],
                                                          home: Path) -> None:
    server = start_server()
    destination = server.destination()
    destination.deliver(NAME, DATA, done_marker=MARKER)
    assert (home / "out" / NAME).read_bytes() == DATA
    assert (home / "out" / MARKER).read_bytes() == b""
    assert listing(home / "out") == [NAME, MARKER]
    destination.deliver(NAME, DATA, done_marker=MARKER)  # a retry: the server renames over
    assert (home / "out" / NAME).read_bytes() == DATA
    assert listing(home / "out") == [NAME, MARKER]

    assert destination.describe() == f"ftp://{USER}@127.0.0.1:{server.port}/out"
    assert PASSWORD not in repr(destination)


def test_ftp_without_size_still_delivers(start_server: Callable[..., Server], home: Path) -> None:
    without_size = {k: v for k, v in FTPHandler.proto_cmds.items() if k != "SIZE"}
    server = start_server(proto_cmds=without_size)
    server.destination().deliver(NAME, DATA, done_marker=MARKER)
    assert (home / "out" / NAME).read_bytes() == DATA
    assert listing(home / "out") == [NAME, MARKER]


def test_ftps_delivers_over_an_encrypted_data_channel(start_server: Callable[..., Server], home: Path,
                                                      tls_files: tuple[Path, Path]) -> None:
    server = start_server(TLS_FTPHandler, **tls_attrs(tls_files))
    destination = server.destination(tls=True, ca_file=tls_files[0])
    destination.deliver(NAME, DATA, done_marker=MARKER)
    assert (home / "out" / NAME).read_bytes() == DATA
    assert listing(home / "out") == [NAME, MARKER]
    assert destination.describe() == f"ftps://{USER}@127.0.0.1:{server.port}/out"


def test_ftps_refuses_a_certificate_it_does_not_trust(start_server: Callable[..., Server], home: Path,
                                                      tls_files: tuple[Path, Path]) -> None:
    server = start_server(TLS_FTPHandler, **tls_attrs(tls_files))
    with pytest.raises(TransportError, match=f"127.0.0.1:{server.port}: TLS handshake.*certificate verify failed"):
        server.destination(tls=True).deliver(NAME, DATA)  # self-signed, no ca_file: not trusted
    assert listing(home / "out") == []


def test_ftps_to_a_server_without_tls_says_so(start_server: Callable[..., Server], home: Path) -> None:
    server = start_server()
    with pytest.raises(TransportError, match="TLS handshake \\(AUTH TLS\\) failed: 500"):
        server.destination(tls=True).deliver(NAME, DATA)
    assert listing(home / "out") == []


def test_a_wrong_password_is_login_refused_and_writes_nothing(start_server: Callable[..., Server],
                                                             home: Path) -> None:
    server = start_server()
    with pytest.raises(LoginRefused, match="530") as caught:
        server.destination(password="not-the-password").deliver(NAME, DATA, done_marker=MARKER)
    assert "not-the-password" not in str(caught.value)
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert listing(home / "out") == []


def test_a_server_not_listening_is_a_transport_error_naming_it() -> None:
    with socket.socket() as bound:  # bound, never listening: a connection is refused, and the port stays ours
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        destination = FtpDestination("127.0.0.1", port, USER, PASSWORD, "out", timeout_seconds=5)
        with pytest.raises(TransportError, match=f"127.0.0.1:{port}: connecting failed.*refused"):
            destination.deliver(NAME, DATA)


def test_a_missing_remote_folder_is_reported_not_created(start_server: Callable[..., Server], home: Path) -> None:
    server = start_server()
    with pytest.raises(TransportError, match="the folder 'feeds/missing' is missing"):
        server.destination(folder="feeds/missing").deliver(NAME, DATA)
    assert listing(home) == ["out"]
    assert listing(home / "out") == []


def test_a_connection_dropped_mid_upload_leaves_no_final_file_and_a_retry_delivers_once(
        start_server: Callable[..., Server], home: Path) -> None:
    broken = start_server(dtp_handler=DroppingDTP)
    with pytest.raises(TransportError, match=f"127.0.0.1:{broken.port}: uploading {NAME}{PART_SUFFIX} failed"):
        broken.destination().deliver(NAME, DATA, done_marker=MARKER)
    assert set(listing(home / "out")) <= {NAME + PART_SUFFIX}  # a .part may remain, nothing else
    if (home / "out" / (NAME + PART_SUFFIX)).exists():
        assert (home / "out" / (NAME + PART_SUFFIX)).stat().st_size < len(DATA)

    healthy = start_server()
    healthy.destination().deliver(NAME, DATA, done_marker=MARKER)
    assert (home / "out" / NAME).read_bytes() == DATA
    assert listing(home / "out") == [NAME, MARKER]


def test_a_server_that_will_not_rename_over_counts_the_same_size_as_delivered(
        start_server: Callable[..., Server], home: Path) -> None:
    server = start_server(NoOverwriteHandler)
    destination = server.destination()
    destination.deliver(NAME, DATA)  # a first delivery: nothing to rename over
    assert listing(home / "out") == [NAME]

    # the retry after a crash between the rename and its record: same bytes there, no marker yet
    destination.deliver(NAME, DATA, done_marker=MARKER)
    assert (home / "out" / NAME).read_bytes() == DATA
    assert listing(home / "out") == [NAME, MARKER]  # the leftover .part was removed
    destination.deliver(NAME, DATA, done_marker=MARKER)  # marker there too: still delivered
    assert listing(home / "out") == [NAME, MARKER]


def test_a_server_that_will_not_rename_over_a_different_file_is_a_transport_error(
        start_server: Callable[..., Server], home: Path) -> None:
    (home / "out" / NAME).write_bytes(b"yesterday's feed\n")
    server = start_server(NoOverwriteHandler)
    with pytest.raises(TransportError, match=f"refused to rename.*550.*holds 17 bytes, not {len(DATA)}"):
        server.destination().deliver(NAME, DATA, done_marker=MARKER)
    assert (home / "out" / NAME).read_bytes() == b"yesterday's feed\n"  # never deleted, never overwritten
    assert MARKER not in listing(home / "out")


def test_a_server_that_stores_fewer_bytes_than_sent_is_caught_by_size(start_server: Callable[..., Server],
                                                                      home: Path) -> None:
    server = start_server(dtp_handler=TruncatingDTP)
    with pytest.raises(TransportError, match=f"holds {len(DATA) - 1} bytes of {NAME}{PART_SUFFIX}, not the"
                                             f" {len(DATA)} sent"):
        server.destination().deliver(NAME, DATA, done_marker=MARKER)
    assert listing(home / "out") == []  # no final file, and the short .part was removed
