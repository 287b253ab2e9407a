"""The FTP/FTPS receiver driven by real clients: ftplib and curl."""

from __future__ import annotations

import ftplib
import io
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from daemon.ingest.endpoints.ftp import FtpService

from .conftest import PASSWORD, SOURCE_ID, USER, WAIT, Spool, have, leftovers, wait_for


def connect(service: FtpService, user: str = USER, password: str = PASSWORD) -> ftplib.FTP:
    host, port = service.address
    ftp = ftplib.FTP(timeout=WAIT)
    ftp.connect(host, port)
    ftp.login(user, password)
    return ftp


def connect_tls(service: FtpService) -> ftplib.FTP_TLS:
    host, port = service.address
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ftp = ftplib.FTP_TLS(context=ctx, timeout=WAIT)
    ftp.connect(host, port)
    ftp.login(USER, PASSWORD)  # sends AUTH TLS first
    ftp.prot_p()
    return ftp


def put(ftp: ftplib.FTP, path: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {path}", io.BytesIO(data))


def test_a_plain_upload_is_delivered_with_who_sent_it(ftp_service: FtpService, spool: Spool,
                                                     source_root: Path) -> None:
    with connect(ftp_service) as ftp:
        reply = put(ftp, "/inbox/stock.csv", b"sku;qty\r\n001;5\r\n")
        ftp.quit()
    assert reply.startswith("226")
    [arrival] = spool.arrivals
    assert arrival.original_name == "stock.csv"
    assert (arrival.protocol, arrival.user, arrival.remote_addr) == ("ftp", USER, "127.0.0.1")
    assert arrival.source_id == SOURCE_ID
    assert arrival.received_at.tzinfo is not None and arrival.elapsed_s is not None
    assert arrival.path.parent == source_root / ".staging"  # same filesystem as the folder
    assert spool.contents("stock.csv") == b"sku;qty\r\n001;5\r\n"
    assert leftovers(source_root) == []


def test_a_relative_upload_after_cwd_inbox_is_delivered(ftp_service: FtpService, spool: Spool) -> None:
    with connect(ftp_service) as ftp:
        ftp.cwd("inbox")
        assert ftp.pwd() == "/inbox"
        put(ftp, "rel.csv", b"x")
    assert [a.original_name for a in spool.wait(1)] == ["rel.csv"]


def test_an_upload_to_the_root_or_results_is_refused(ftp_service: FtpService, spool: Spool,
                                                     source_root: Path) -> None:
    with connect(ftp_service) as ftp:
        for path in ("/stock.csv", "/results/stock.csv", "stock.csv"):
            with pytest.raises(ftplib.error_perm, match="550 Uploads go to /inbox"):
                put(ftp, path, b"x")
    assert spool.arrivals == []
    assert leftovers(source_root) == []


def test_the_root_lists_only_inbox_and_results(ftp_service: FtpService, source_root: Path) -> None:
    (source_root / "results" / "r.csv").write_text("ok")
    with connect(ftp_service) as ftp:
        put(ftp, "/inbox/keep.tmp", b"x")  # makes the hidden staging folder exist too
        assert sorted(ftp.nlst("/")) == ["inbox", "results"]
        assert [Path(n).name for n in ftp.nlst("/results")] == ["r.csv"]
        assert [Path(n).name for n in ftp.nlst("/inbox")] == ["keep.tmp"]
        assert {name for name, _ in ftp.mlsd("/")} == {"inbox", "results"}


@pytest.mark.parametrize(
    "command",
    ["RETR ../../../../etc/passwd", "RETR /etc/passwd", "CWD /etc", "CWD /.staging",
     "RETR /inbox/../../etc/hostname", "LIST /.staging",
     "RETR /results/leak.txt", "MKD /inbox/sub", "RMD /inbox", "SITE CHMOD 777 /inbox",
     "DELE /results/r.csv", "RNFR /results/r.csv", "STOU", "APPE /inbox/a.csv"],
)
def test_escapes_and_forbidden_commands_are_refused(
    ftp_service: FtpService, source_root: Path, tmp_path: Path, command: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (source_root / "results" / "leak.txt").symlink_to(secret)
    (source_root / "results" / "r.csv").write_text("ok")
    with connect(ftp_service) as ftp:
        if command.startswith(("RETR", "LIST", "STOU", "APPE")):
            with pytest.raises(ftplib.error_perm) as err:
                ftp.retrbinary(command, lambda b: None)
        else:
            with pytest.raises(ftplib.error_perm) as err:
                ftp.sendcmd(command)
        assert str(err.value)[0] == "5"
        assert ftp.pwd() == "/"
    assert (source_root / "results" / "r.csv").exists()


def test_cd_up_from_the_root_stays_at_the_root(ftp_service: FtpService) -> None:
    with connect(ftp_service) as ftp:
        ftp.cwd("/inbox")
        ftp.cwd("../../..")
        assert ftp.pwd() == "/"


def test_a_download_from_results_works_and_from_inbox_does_not(
    ftp_service: FtpService, source_root: Path
) -> None:
    (source_root / "results" / "stock.result.csv").write_bytes(b"applied 3 rows\n")
    with connect(ftp_service) as ftp:
        got = io.BytesIO()
        ftp.retrbinary("RETR /results/stock.result.csv", got.write)
        assert got.getvalue() == b"applied 3 rows\n"
        put(ftp, "/inbox/mine.tmp", b"x")
        with pytest.raises(ftplib.error_perm, match="550 Downloads come from /results"):
            ftp.retrbinary("RETR /inbox/mine.tmp", got.write)


@pytest.mark.ban_policy(threshold=10)  # 1 + 2 + 2 points: banned at the default 5
def test_a_wrong_password_and_anonymous_are_refused(ftp_service: FtpService) -> None:
    host, port = ftp_service.address
    for user, password in [(USER, "wrong"), ("nobody", PASSWORD), ("anonymous", "a@b.c")]:
        with ftplib.FTP(timeout=WAIT) as ftp:
            ftp.connect(host, port)
            with pytest.raises(ftplib.error_perm, match="530"):
                ftp.login(user, password)


def test_repeated_failures_ban_the_address_even_for_the_right_password(
    ftp_service: FtpService, bans: object
) -> None:
    host, port = ftp_service.address
    failures = 0
    while failures < 5:
        with ftplib.FTP(timeout=WAIT) as ftp:
            ftp.connect(host, port)
            for _ in range(2):
                if failures >= 5:
                    break
                with pytest.raises((ftplib.error_perm, ftplib.error_temp)):
                    ftp.login(USER, "wrong")
                failures += 1
    assert bans.bans_total == 1  # type: ignore[attr-defined]
    with ftplib.FTP(timeout=WAIT) as ftp, pytest.raises(ftplib.error_temp, match="421"):
        ftp.connect(host, port)


def test_a_client_killed_mid_upload_delivers_nothing_and_leaves_nothing(
    ftp_service: FtpService, spool: Spool, source_root: Path
) -> None:
    ftp = connect(ftp_service)
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR /inbox/half.csv")
    data.sendall(b"sku;qty\n" * 20_000)
    wait_for(lambda: len(list((source_root / ".staging").glob("*"))) == 1, what="staging file")
    # what a killed process does: the kernel closes both connections at once (FIN, not RST)
    data.close()
    ftp.sock.close()
    ftp.file.close()
    time.sleep(1.0)  # well past the completion grace
    assert spool.arrivals == []
    wait_for(lambda: leftovers(source_root) == [], what="staging to be cleaned")


def test_a_reset_data_connection_is_not_delivered_even_with_every_byte_in(
    ftp_service: FtpService, spool: Spool, source_root: Path
) -> None:
    with connect(ftp_service) as ftp:
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("STOR /inbox/reset.csv")
        data.sendall(b"x" * 100_000)
        # RST on the data connection (SO_LINGER 0); the control connection stays
        data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        data.close()
        with pytest.raises(ftplib.error_temp, match="426 The data connection"):
            ftp.voidresp()
    assert spool.arrivals == []
    wait_for(lambda: leftovers(source_root) == [], what="staging to be cleaned")


def test_abor_during_an_upload_keeps_nothing(ftp_service: FtpService, spool: Spool,
                                             source_root: Path) -> None:
    with connect(ftp_service) as ftp:
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("STOR /inbox/abort.csv")
        data.sendall(b"x" * 50_000)
        wait_for(lambda: len(list((source_root / ".staging").glob("*"))) == 1, what="staging")
        resp = ftp.abort()
        data.close()
        assert resp[:3] in ("225", "226", "426")
        ftp.voidcmd("NOOP")
    assert spool.arrivals == []
    wait_for(lambda: leftovers(source_root) == [], what="staging to be cleaned")


def test_a_temp_upload_then_rename_is_delivered_once_under_its_final_name(
    ftp_service: FtpService, spool: Spool, source_root: Path
) -> None:
    with connect(ftp_service) as ftp:
        reply = put(ftp, "/inbox/stock.csv.part", b"sku;qty\n1;2\n")
        assert "until renamed" in reply
        assert [Path(n).name for n in ftp.nlst("/inbox")] == ["stock.csv.part"]
        assert spool.arrivals == []
        ftp.rename("/inbox/stock.csv.part", "/inbox/stock.csv")
        assert ftp.nlst("/inbox") == []
    [arrival] = spool.arrivals
    assert arrival.original_name == "stock.csv"
    assert arrival.elapsed_s is None
    assert spool.contents("stock.csv") == b"sku;qty\n1;2\n"
    assert leftovers(source_root) == []


def test_temp_files_can_be_renamed_to_other_temp_names_and_deleted(
    ftp_service: FtpService, spool: Spool, source_root: Path
) -> None:
    with connect(ftp_service) as ftp:
        put(ftp, "/inbox/a.tmp", b"x")
        ftp.rename("/inbox/a.tmp", "/inbox/.b")
        assert [Path(n).name for n in ftp.nlst("/inbox")] == [".b"]
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.rename("/inbox/.b", "/results/b.csv")
        ftp.delete("/inbox/.b")
    assert spool.arrivals == []
    assert leftovers(source_root) == []


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_kept(
    start_ftp, spool: Spool, source_root: Path  # type: ignore[no-untyped-def]
) -> None:
    service = start_ftp(max_file_bytes=10_000)
    with connect(service) as ftp:
        with pytest.raises(ftplib.error_perm, match="552 The file exceeds the maximum size"):
            try:
                put(ftp, "/inbox/big.csv", b"y" * 2_000_000)
            except ConnectionError:  # the server hung up the data connection mid-send
                ftp.getresp()  # ... and says why on the control connection
        put(ftp, "/inbox/small.csv", b"y" * 10_000)  # exactly the limit is fine
    assert [a.original_name for a in spool.arrivals] == ["small.csv"]
    assert leftovers(source_root) == []


def test_resume_is_refused_with_a_clear_reply(ftp_service: FtpService, spool: Spool,
                                              source_root: Path) -> None:
    with connect(ftp_service) as ftp:
        with pytest.raises(ftplib.error_perm, match="Resume is not supported"):
            ftp.storbinary("STOR /inbox/r.csv", io.BytesIO(b"abc"), rest=10)
        with pytest.raises(ftplib.error_perm, match="Resume is not supported"):
            ftp.storbinary("APPE /inbox/r.csv", io.BytesIO(b"abc"))
    assert spool.arrivals == []
    assert leftovers(source_root) == []


def test_when_deliver_fails_the_client_gets_451_and_the_server_keeps_serving(
    ftp_service: FtpService, spool: Spool
) -> None:
    spool.fail = True
    with connect(ftp_service) as ftp:
        with pytest.raises(ftplib.error_temp, match="451"):
            put(ftp, "/inbox/a.csv", b"x")
        spool.fail = False
        put(ftp, "/inbox/b.csv", b"y")
    assert [a.original_name for a in spool.arrivals] == ["b.csv"]
    ftp_service.check()


def test_ftps_upload_is_delivered_as_ftps(start_ftp, tls_files, spool: Spool) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    service = start_ftp(tls_cert=cert, tls_key=key, require_tls=True)
    with connect_tls(service) as ftp:
        put(ftp, "/inbox/secure.csv", b"sku;qty\n")
        assert sorted(ftp.nlst("/")) == ["inbox", "results"]
    [arrival] = spool.arrivals
    assert arrival.protocol == "ftps"
    assert spool.contents("secure.csv") == b"sku;qty\n"


def test_ftps_required_refuses_a_plain_text_login(start_ftp, tls_files, spool: Spool) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    service = start_ftp(tls_cert=cert, tls_key=key, require_tls=True)
    host, port = service.address
    with ftplib.FTP(timeout=WAIT) as ftp:
        ftp.connect(host, port)
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required"):
            ftp.login(USER, PASSWORD)


def test_ftps_required_refuses_a_plain_data_channel(start_ftp, tls_files) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    service = start_ftp(tls_cert=cert, tls_key=key, require_tls=True)
    with connect_tls(service) as ftp:
        ftp.prot_c()
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required on the data channel"):
            ftp.nlst("/")


def test_twenty_clients_uploading_at_once_are_all_delivered(
    start_ftp, spool: Spool, source_root: Path  # type: ignore[no-untyped-def]
) -> None:
    service = start_ftp(max_per_ip=25, max_connections=50, max_unauthenticated_per_ip=20)
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            with connect(service) as ftp:
                put(ftp, f"/inbox/feed-{i:02d}.csv", f"sku;qty\n{i};{i}\n".encode() * 500)
                ftp.quit()
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it was
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert errors == []
    names = sorted(a.original_name for a in spool.arrivals)
    assert names == [f"feed-{i:02d}.csv" for i in range(20)]
    for i in range(20):
        assert spool.contents(f"feed-{i:02d}.csv") == f"sku;qty\n{i};{i}\n".encode() * 500
    assert leftovers(source_root) == []


def test_more_connections_per_ip_than_allowed_are_refused(start_ftp) -> None:  # type: ignore[no-untyped-def]
    service = start_ftp(max_per_ip=2)
    host, port = service.address
    a, b = connect(service), connect(service)
    try:
        with ftplib.FTP(timeout=WAIT) as c, pytest.raises(ftplib.error_temp, match="421"):
            c.connect(host, port)
            c.login(USER, PASSWORD)
    finally:
        a.close()
        b.close()


def test_an_idle_client_is_disconnected(start_ftp) -> None:  # type: ignore[no-untyped-def]
    service = start_ftp(idle_timeout=1)
    with connect(service) as ftp:
        time.sleep(2.5)
        with pytest.raises((ftplib.error_temp, EOFError, OSError)):
            ftp.voidcmd("NOOP")
            ftp.voidcmd("NOOP")


def test_passive_ports_and_masquerade_address_are_used(start_ftp) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:  # find a free port block
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    ports = range(base, base + 5)
    service = start_ftp(passive_ports=ports, masquerade_address="10.1.2.3")
    with connect(service) as ftp:
        reply = ftp.sendcmd("PASV")
        nums = reply[reply.index("(") + 1 : reply.index(")")].split(",")
        assert nums[:4] == ["10", "1", "2", "3"]
        assert int(nums[4]) * 256 + int(nums[5]) in ports
        ftp.sendcmd("ABOR")


def test_each_start_is_a_new_server_and_stop_releases_the_port(start_ftp) -> None:  # type: ignore[no-untyped-def]
    service = start_ftp()
    first = service.address
    service.check()
    service.stop(timeout=WAIT)
    with pytest.raises(OSError):  # nothing listens there any more
        socket.create_connection(first, timeout=5).close()
    service.start()
    service.check()
    with connect(service) as ftp:
        assert ftp.pwd() == "/"


# --- curl, when installed


def curl(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([have("curl"), "-sS", "--max-time", str(int(timeout)), *args],
                          check=False, capture_output=True, text=True, timeout=timeout + 10)


def test_curl_uploads_over_ftp_and_reads_results(ftp_service: FtpService, spool: Spool,
                                                 source_root: Path, tmp_path: Path) -> None:
    host, port = ftp_service.address
    src = tmp_path / "curl.csv"
    src.write_bytes(b"sku;qty\n9;9\n")
    done = curl("-T", str(src), f"ftp://{USER}:{PASSWORD}@{host}:{port}/inbox/curl.csv")
    assert done.returncode == 0, done.stderr
    assert spool.contents("curl.csv") == b"sku;qty\n9;9\n"
    (source_root / "results" / "curl.result.csv").write_text("ok\n")
    got = curl(f"ftp://{USER}:{PASSWORD}@{host}:{port}/results/curl.result.csv")
    assert got.returncode == 0 and got.stdout == "ok\n"


def test_curl_uploads_over_ftps(start_ftp, tls_files, spool: Spool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    service = start_ftp(tls_cert=cert, tls_key=key, require_tls=True)
    host, port = service.address
    src = tmp_path / "tls.csv"
    src.write_bytes(b"a;b\n")
    done = curl("--ssl-reqd", "-k", "-T", str(src),
                f"ftp://{USER}:{PASSWORD}@{host}:{port}/inbox/tls.csv")
    assert done.returncode == 0, done.stderr
    [arrival] = spool.arrivals
    assert arrival.protocol == "ftps"


def test_a_killed_curl_upload_delivers_nothing(ftp_service: FtpService, spool: Spool,
                                               source_root: Path, tmp_path: Path) -> None:
    host, port = ftp_service.address
    src = tmp_path / "slow.csv"
    src.write_bytes(b"z" * 2_000_000)
    proc = subprocess.Popen(
        [have("curl"), "-sS", "--limit-rate", "100k", "-T", str(src),
         f"ftp://{USER}:{PASSWORD}@{host}:{port}/inbox/slow.csv"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: any((source_root / ".staging").glob("*")), what="upload to start")
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(WAIT)
    time.sleep(1.0)
    assert spool.arrivals == []
    wait_for(lambda: leftovers(source_root) == [], what="staging to be cleaned")
