"""The SFTP receiver driven by real clients: paramiko, OpenSSH sftp and curl."""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from paramiko.sftp import CMD_CLOSE

from daemon.auth.hostkey import fingerprint
from daemon.ingest.endpoints.sftp import SftpService

from .conftest import PASSWORD, SOURCE_ID, USER, WAIT, Spool, have, leftovers, wait_for


def close_handle(sftp: paramiko.SFTPClient, f: paramiko.SFTPFile) -> None:
    """Send CLOSE and raise on an error status: paramiko's own close() swallows
    errors, and what the server says on close is the point of these tests."""
    f.flush()
    try:
        sftp._request(CMD_CLOSE, f.handle)
    finally:
        f._closed = True  # the handle is gone on the server either way


@contextlib.contextmanager
def session(service: SftpService, user: str = USER, password: str | None = PASSWORD,
            pkey: paramiko.PKey | None = None) -> Iterator[paramiko.SFTPClient]:
    transport = paramiko.Transport(service.address)
    transport.banner_timeout = transport.auth_timeout = WAIT
    try:
        transport.connect(username=user, password=None if pkey else password, pkey=pkey)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sftp.get_channel().settimeout(WAIT)
        try:
            yield sftp
        finally:
            sftp.close()
    finally:
        transport.close()


def test_a_password_upload_is_delivered_with_who_sent_it(sftp_service: SftpService, spool: Spool,
                                                        source_root: Path) -> None:
    with session(sftp_service) as sftp:
        sftp.putfo(io.BytesIO(b"sku;qty\n1;5\n"), "/inbox/stock.csv")
    [arrival] = spool.wait(1)
    assert (arrival.original_name, arrival.protocol, arrival.user) == ("stock.csv", "sftp", USER)
    assert (arrival.source_id, arrival.remote_addr) == (SOURCE_ID, "127.0.0.1")
    assert arrival.elapsed_s is not None
    assert spool.contents("stock.csv") == b"sku;qty\n1;5\n"
    assert leftovers(source_root) == []


def test_a_public_key_upload_is_delivered(sftp_service: SftpService, spool: Spool,
                                          client_key: tuple[paramiko.Ed25519Key, Path]) -> None:
    with session(sftp_service, pkey=client_key[0]) as sftp:
        sftp.chdir("/inbox")
        sftp.putfo(io.BytesIO(b"k"), "key.csv")
    assert [a.original_name for a in spool.wait(1)] == ["key.csv"]


def test_a_wrong_password_or_unknown_key_is_refused(sftp_service: SftpService) -> None:
    with pytest.raises(paramiko.AuthenticationException), session(sftp_service, password="wrong"):
        pass
    with pytest.raises(paramiko.AuthenticationException), session(sftp_service, pkey=paramiko.ECDSAKey.generate()):
        pass


def test_repeated_failures_ban_the_address(sftp_service: SftpService, bans: object) -> None:
    for _ in range(5):
        # AuthenticationException is an SSHException
        with pytest.raises(paramiko.SSHException), session(sftp_service, password="wrong"):
            pass
    assert bans.bans_total == 1  # type: ignore[attr-defined]
    # even the right password: refused at connect
    with pytest.raises((paramiko.SSHException, EOFError, OSError)), session(sftp_service):
        pass


def test_the_root_shows_only_inbox_and_results(sftp_service: SftpService, source_root: Path) -> None:
    (source_root / "results" / "r.csv").write_text("ok")
    with session(sftp_service) as sftp:
        sftp.putfo(io.BytesIO(b"x"), "/inbox/keep.tmp")
        assert sorted(sftp.listdir("/")) == ["inbox", "results"]
        assert sftp.listdir("/results") == ["r.csv"]
        assert sftp.listdir("/inbox") == ["keep.tmp"]
        assert sftp.normalize("../../..") == "/"
        assert sftp.normalize("inbox/../results") == "/results"


def test_jail_escapes_are_refused(sftp_service: SftpService, source_root: Path,
                                  tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (source_root / "results" / "leak.txt").symlink_to(secret)
    with session(sftp_service) as sftp:
        for path in ("/../../../etc/passwd", "/etc/passwd", "../etc/hostname",
                     "/results/leak.txt", "/.staging", "/inbox/../../etc/passwd"):
            with pytest.raises(OSError):
                sftp.open(path, "rb").read()
            with pytest.raises(OSError):
                sftp.stat(path)
        with pytest.raises(OSError):
            sftp.listdir("/.staging")
        with pytest.raises(OSError):
            sftp.listdir(str(tmp_path))


def test_uploads_outside_the_inbox_and_other_changes_are_refused(
    sftp_service: SftpService, source_root: Path, spool: Spool
) -> None:
    (source_root / "results" / "r.csv").write_text("ok")
    with session(sftp_service) as sftp:
        for path in ("/stock.csv", "/results/stock.csv", "stock.csv"):
            with pytest.raises(PermissionError, match="Uploads go to /inbox"):
                sftp.putfo(io.BytesIO(b"x"), path)
        with pytest.raises(PermissionError, match="Creating folders"):
            sftp.mkdir("/inbox/sub")
        with pytest.raises(PermissionError):
            sftp.rmdir("/inbox")
        with pytest.raises(PermissionError):
            sftp.remove("/results/r.csv")
        with pytest.raises(PermissionError):
            sftp.rename("/results/r.csv", "/inbox/r.csv")
        with pytest.raises(PermissionError):
            sftp.symlink("/etc/passwd", "/inbox/p")
        with pytest.raises(OSError, match="Resume is not supported"):
            sftp.open("/inbox/a.csv", "a")
    assert spool.arrivals == []
    assert leftovers(source_root) == []
    assert (source_root / "results" / "r.csv").exists()


def test_a_download_from_results_works(sftp_service: SftpService, source_root: Path) -> None:
    (source_root / "results" / "stock.result.csv").write_bytes(b"applied 3 rows\n" * 1000)
    with session(sftp_service) as sftp:
        got = io.BytesIO()
        sftp.getfo("/results/stock.result.csv", got)
        assert got.getvalue() == b"applied 3 rows\n" * 1000
        sftp.putfo(io.BytesIO(b"x"), "/inbox/mine.tmp")
        with pytest.raises(PermissionError, match="Downloads come from /results"):
            sftp.open("/inbox/mine.tmp", "rb")


def test_a_connection_lost_before_close_delivers_nothing(sftp_service: SftpService, spool: Spool,
                                                        source_root: Path) -> None:
    transport = paramiko.Transport(sftp_service.address)
    try:
        transport.connect(username=USER, password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        f = sftp.open("/inbox/half.csv", "wb")
        f.write(b"sku;qty\n" * 10_000)
        f.flush()
        wait_for(lambda: any((source_root / ".staging").glob("*")), what="staging file")
        transport.sock.close()  # the network goes away; no CLOSE is ever sent
    finally:
        transport.close()
    time.sleep(0.5)
    wait_for(lambda: leftovers(source_root) == [], what="staging to be cleaned")
    assert spool.arrivals == []


def test_a_temp_upload_then_rename_is_delivered_once_under_its_final_name(
    sftp_service: SftpService, spool: Spool, source_root: Path
) -> None:
    with session(sftp_service) as sftp:
        sftp.putfo(io.BytesIO(b"one\n"), "/inbox/a.csv.filepart", confirm=True)
        assert sftp.listdir("/inbox") == ["a.csv.filepart"]
        sftp.rename("/inbox/a.csv.filepart", "/inbox/a.csv")
        sftp.putfo(io.BytesIO(b"two\n"), "/inbox/b.csv.tmp")
        sftp.posix_rename("/inbox/b.csv.tmp", "/inbox/b.csv")
        assert sftp.listdir("/inbox") == []
    assert sorted(a.original_name for a in spool.arrivals) == ["a.csv", "b.csv"]
    assert spool.contents("a.csv") == b"one\n" and spool.contents("b.csv") == b"two\n"
    assert leftovers(source_root) == []


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_kept(
    start_sftp, spool: Spool, source_root: Path  # type: ignore[no-untyped-def]
) -> None:
    service = start_sftp(max_file_bytes=10_000)
    with session(service) as sftp:
        f = sftp.open("/inbox/big.csv", "wb")
        with pytest.raises(OSError, match="exceeds the maximum size of 10000 bytes"):
            f.write(b"y" * 100_000)
            f.flush()
        with pytest.raises(OSError, match="exceeds the maximum size"):
            close_handle(sftp, f)
        sftp.putfo(io.BytesIO(b"y" * 10_000), "/inbox/small.csv")
    assert [a.original_name for a in spool.wait(1)] == ["small.csv"]
    assert leftovers(source_root) == []


def test_a_file_with_a_gap_is_refused_on_close(sftp_service: SftpService, spool: Spool,
                                               source_root: Path) -> None:
    with session(sftp_service) as sftp:
        f = sftp.open("/inbox/gap.csv", "wb")
        f.seek(100)
        f.write(b"tail")
        with pytest.raises(OSError, match="Not every byte"):
            close_handle(sftp, f)
        with pytest.raises(FileNotFoundError):
            sftp.stat("/inbox/gap.csv")
    assert spool.arrivals == []
    assert leftovers(source_root) == []


def test_out_of_order_writes_covering_the_file_are_complete(sftp_service: SftpService,
                                                           spool: Spool) -> None:
    with session(sftp_service) as sftp, sftp.open("/inbox/parts.csv", "wb") as f:
        for offset, chunk in [(4, b"5678"), (0, b"1234"), (8, b"9")]:
            f.seek(offset)
            f.write(chunk)
    assert spool.contents("parts.csv") == b"123456789"


def test_when_deliver_fails_the_close_fails_and_the_server_keeps_serving(
    sftp_service: SftpService, spool: Spool
) -> None:
    spool.fail = True
    with session(sftp_service) as sftp:
        f = sftp.open("/inbox/a.csv", "wb")
        f.write(b"x")
        with pytest.raises(OSError, match="could not be taken"):
            close_handle(sftp, f)
        spool.fail = False
        sftp.putfo(io.BytesIO(b"y"), "/inbox/b.csv")
    assert [a.original_name for a in spool.arrivals] == ["b.csv"]
    sftp_service.check()


def test_shell_exec_and_forwarding_are_refused(sftp_service: SftpService) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    host, port = sftp_service.address
    try:
        client.connect(host, port, username=USER, password=PASSWORD, look_for_keys=False,
                       allow_agent=False, timeout=WAIT)
        with pytest.raises(paramiko.SSHException):
            client.exec_command("id", timeout=WAIT)
        transport = client.get_transport()
        assert transport is not None
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 0),
                                   timeout=WAIT)
        chan = transport.open_session(timeout=WAIT)
        with pytest.raises(paramiko.SSHException):
            chan.invoke_subsystem("netconf")
        chan.close()
    finally:
        client.close()


def test_twenty_clients_uploading_at_once_are_all_delivered(start_sftp, spool: Spool,  # type: ignore[no-untyped-def]
                                                            source_root: Path) -> None:
    # one address, twenty at once: over the default limits, which a merchant raises for such a sender
    sftp_service = start_sftp(max_per_ip=25, max_unauthenticated_per_ip=20)
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            with session(sftp_service) as sftp:
                sftp.putfo(io.BytesIO(f"{i};{i}\n".encode() * 2000), f"/inbox/feed-{i:02d}.csv")
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it was
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    assert errors == []
    assert sorted(a.original_name for a in spool.arrivals) == [f"feed-{i:02d}.csv" for i in range(20)]
    for i in range(20):
        assert spool.contents(f"feed-{i:02d}.csv") == f"{i};{i}\n".encode() * 2000
    assert leftovers(source_root) == []


def test_the_host_key_is_the_same_across_restarts(start_sftp) -> None:  # type: ignore[no-untyped-def]
    service = start_sftp()

    def presented() -> str:
        transport = paramiko.Transport(service.address)
        try:
            transport.start_client(timeout=WAIT)
            return fingerprint(transport.get_remote_server_key())
        finally:
            transport.close()

    first = presented()
    assert first == fingerprint(service.host_key)
    service.stop(timeout=WAIT)
    service.start()
    service.check()
    assert presented() == first


def test_an_idle_session_is_closed(start_sftp) -> None:  # type: ignore[no-untyped-def]
    service = start_sftp(idle_timeout=1)
    with session(service) as sftp:
        time.sleep(2.5)
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            sftp.listdir("/")


# --- OpenSSH sftp and curl, when installed

SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]


def test_openssh_sftp_uploads_with_a_key_and_renames_a_temp_file(
    sftp_service: SftpService, spool: Spool, source_root: Path, tmp_path: Path,
    client_key: tuple[paramiko.Ed25519Key, Path],
) -> None:
    host, port = sftp_service.address
    local = tmp_path / "local.csv"
    local.write_bytes(b"sku;qty\n7;7\n")
    (source_root / "results" / "local.result.csv").write_text("ok\n")
    batch = tmp_path / "batch"
    batch.write_text(
        f"cd /inbox\nput {local} direct.csv\nput {local} later.csv.part\n"
        f"rename later.csv.part later.csv\nget /results/local.result.csv {tmp_path}/got.csv\n"
        "-mkdir /inbox/sub\n-put {local} /outside.csv\n".replace("{local}", str(local))
    )
    done = subprocess.run(
        [have("sftp"), *SSH_OPTS, "-i", str(client_key[1]), "-P", str(port), "-b", str(batch),
         f"{USER}@{host}"],
        check=False, capture_output=True, text=True, timeout=WAIT * 2,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(a.original_name for a in spool.arrivals) == ["direct.csv", "later.csv"]
    assert spool.contents("later.csv") == b"sku;qty\n7;7\n"
    assert (tmp_path / "got.csv").read_text() == "ok\n"
    assert leftovers(source_root) == []


def test_curl_uploads_over_sftp(sftp_service: SftpService, spool: Spool, tmp_path: Path) -> None:
    host, port = sftp_service.address
    src = tmp_path / "curl.csv"
    src.write_bytes(b"a;b\n")
    done = subprocess.run(
        [have("curl"), "-sS", "--insecure", "--max-time", str(int(WAIT)), "-T", str(src),
         "-u", f"{USER}:{PASSWORD}", f"sftp://{host}:{port}/inbox/curl.csv"],
        check=False, capture_output=True, text=True, timeout=WAIT + 10,
    )
    assert done.returncode == 0, done.stderr
    [arrival] = spool.wait(1)
    assert arrival.original_name == "curl.csv" and arrival.protocol == "sftp"
