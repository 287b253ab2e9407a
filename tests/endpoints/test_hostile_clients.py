"""Bans and connection limits against real clients: paramiko and ftplib, raw sockets for a flood.

Linux routes all of 127.0.0.0/8 to loopback, so a client socket bound to
127.0.0.2 is another address to the server than one from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from structlog.testing import capture_logs

from daemon.auth.accounts import MemoryAuthenticator
from daemon.auth.ban_store import DbBanStore
from daemon.auth.bans import BanList, BanPolicy
from daemon.db.engine import session_factory
from daemon.ingest.endpoints.ftp import FtpConfig, FtpService
from daemon.ingest.endpoints.sftp import SftpConfig, SftpService
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config

from .conftest import FTP_TEST_DEFAULTS, PASSWORD, USER, WAIT, Spool, wait_for

OTHER, OTHER_PASSWORD = "wh2", "other-secret"
FLOODER = "127.0.0.2"


@pytest.fixture
def two_accounts(accounts: MemoryAuthenticator, tmp_path: Path) -> MemoryAuthenticator:
    root = tmp_path / "sources" / "wh2"
    (root / "inbox").mkdir(parents=True)
    (root / "results").mkdir()
    accounts.add(OTHER, source_id=8, root=root, password=OTHER_PASSWORD)
    return accounts


def sftp_login(service: SftpService, user: str, password: str, source: str = "127.0.0.1") -> None:
    """Log in over SFTP from ``source`` and list the root; raises what paramiko raises."""
    sock = socket.create_connection(service.address, timeout=WAIT, source_address=(source, 0))
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = WAIT
    try:
        transport.connect(username=user, password=password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        assert sorted(sftp.listdir("/")) == ["inbox", "results"]
        sftp.close()
    finally:
        transport.close()
        sock.close()


def ftp_login(service: FtpService, user: str, password: str) -> None:
    with ftplib.FTP(timeout=WAIT) as ftp:
        ftp.connect(*service.address)
        ftp.login(user, password)
        ftp.quit()


def start_sftp_with(tmp_path: Path, auth: MemoryAuthenticator, bans: BanList, spool: Spool,
                    **overrides: object) -> SftpService:
    values: dict[str, object] = {"host": "127.0.0.1", "port": 0,
                                 "host_key_path": tmp_path / "hostkey" / "ssh_host_ed25519_key", **overrides}
    service = SftpService(SftpConfig(**values), auth, bans, spool)  # type: ignore[arg-type]
    service.start()
    return service


REFUSED = (paramiko.SSHException, EOFError, OSError)


# --- defect 1: a valid login of its own does not launder guesses at another account


def test_over_sftp_guesses_at_one_account_between_valid_logins_as_another_end_banned(
    start_sftp, two_accounts: MemoryAuthenticator, bans: BanList  # type: ignore[no-untyped-def]
) -> None:
    service = start_sftp()
    guesses = 0
    for attempt in range(1, 40):
        if bans.is_banned("127.0.0.1", time.time()):
            break
        if attempt % 4 == 0:
            sftp_login(service, OTHER, OTHER_PASSWORD)  # the attacker's own account
            continue
        with pytest.raises(paramiko.AuthenticationException):
            sftp_login(service, USER, f"guess-{attempt}")
        guesses += 1
    assert guesses == 5 and bans.bans_total == 1
    with pytest.raises(REFUSED):  # its own valid login too, refused at accept
        sftp_login(service, OTHER, OTHER_PASSWORD)


def test_over_ftp_guesses_at_one_account_between_valid_logins_as_another_end_banned(
    start_ftp, two_accounts: MemoryAuthenticator, bans: BanList  # type: ignore[no-untyped-def]
) -> None:
    service = start_ftp()
    guesses = 0
    while bans.bans_total == 0 and guesses < 40:
        with ftplib.FTP(timeout=WAIT) as ftp:
            ftp.connect(*service.address)
            with pytest.raises((ftplib.error_perm, ftplib.error_temp)):
                ftp.login(USER, f"guess-{guesses}")
            guesses += 1
            if bans.bans_total:
                break
        ftp_login(service, OTHER, OTHER_PASSWORD)
    assert guesses == 5
    with ftplib.FTP(timeout=WAIT) as ftp, pytest.raises(ftplib.error_temp, match="421 Too many failed logins"):
        ftp.connect(*service.address)


# --- kept in the database


@pytest.fixture
def db_bans(database: Database) -> Callable[[], BanList]:
    """A new BanList over the test database each call: what a restarted daemon builds."""
    sessions = session_factory(database.engine)
    return lambda: BanList(BanPolicy(threshold=5, refresh_s=0.2), DbBanStore(sessions, node="test"))


def test_an_sftp_ban_survives_a_restart_of_the_endpoint(
    tmp_path: Path, accounts: MemoryAuthenticator, spool: Spool, db_bans: Callable[[], BanList]
) -> None:
    first = start_sftp_with(tmp_path, accounts, db_bans(), spool)
    try:
        for i in range(5):
            with pytest.raises(paramiko.AuthenticationException):
                sftp_login(first, USER, f"guess-{i}")
    finally:
        first.stop(timeout=WAIT)
    restarted = start_sftp_with(tmp_path, accounts, db_bans(), spool)
    try:
        with pytest.raises(REFUSED):
            sftp_login(restarted, USER, PASSWORD)
        assert restarted.gate.refused_total == 1
    finally:
        restarted.stop(timeout=WAIT)


def test_ban_list_shows_the_ban_and_ban_remove_lets_the_address_back_in(
    tmp_path: Path, accounts: MemoryAuthenticator, spool: Spool, database: Database,
    db_bans: Callable[[], BanList], capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path / "conf", ONE_WAREHOUSE, database_url=database.url)
    bans = db_bans()
    service = FtpService(FtpConfig(**FTP_TEST_DEFAULTS), accounts, bans, spool)  # type: ignore[arg-type]
    service.start()
    try:
        for i in range(5):
            with ftplib.FTP(timeout=WAIT) as ftp:
                ftp.connect(*service.address)
                with pytest.raises((ftplib.error_perm, ftplib.error_temp)):
                    ftp.login(USER, f"guess-{i}")
        listed = run_cli(capsys, "-c", config, "ban", "list", "--json").json()["bans"]
        assert [(b["address"], b["active"], b["bans"], b["reason"], b["node"]) for b in listed] == [
            ("127.0.0.1", True, 1, f"failed logins as {USER} x5", "test")]
        text = run_cli(capsys, "-c", config, "ban", "list")
        assert "127.0.0.1" in text.out and "REASON" in text.out
        with pytest.raises(ftplib.error_temp, match="421"):
            ftp_login(service, USER, PASSWORD)

        removed = run_cli(capsys, "-c", config, "ban", "remove", "127.0.0.1")
        assert (removed.code, removed.out.strip()) == (0, "removed the ban of 127.0.0.1")
        again = run_cli(capsys, "-c", config, "ban", "remove", "127.0.0.1")
        assert again.code != 0 and "127.0.0.1 is not banned" in again.err

        def logs_in() -> bool:
            try:
                ftp_login(service, USER, PASSWORD)
            except ftplib.error_temp:
                return False
            return True

        wait_for(logs_in, what="the running endpoint to read the removal")
        assert run_cli(capsys, "-c", config, "ban", "list", "--json").json()["bans"] == []
    finally:
        service.stop(timeout=WAIT)


# --- defect 2: a flood from one address does not lock out another


@contextlib.contextmanager
def flood(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections from 127.0.0.2 that say nothing, held open until the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((FLOODER, 0))
            s.settimeout(WAIT)
            socks.append(s)
            with contextlib.suppress(ConnectionResetError):  # refused before connect() returned
                s.connect(address)
        yield socks
    finally:
        for s in socks:
            s.close()


def _one_line_each(records: list[logging.LogRecord]) -> None:
    traceback_lines = [r.getMessage() for r in records
                       if r.name.startswith("paramiko") and ("Traceback" in r.getMessage()
                                                             or r.getMessage().startswith("  File"))]
    assert traceback_lines == []
    assert all(r.exc_info is None for r in records)


def test_an_sftp_flood_from_one_address_does_not_lock_out_another(
    start_sftp, bans: BanList, spool: Spool, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    service: SftpService = start_sftp(max_connections=50, max_per_ip=10, max_unauthenticated=20,
                                      max_unauthenticated_per_ip=5)
    caplog.set_level(logging.INFO)
    with capture_logs() as logs, flood(service.address, 80):
        wait_for(lambda: service.gate.refused_total >= 75, what="the flood to be refused")
        sock = socket.create_connection(service.address, timeout=WAIT, source_address=("127.0.0.1", 0))
        transport = paramiko.Transport(sock)
        transport.banner_timeout = transport.auth_timeout = WAIT
        try:
            transport.connect(username=USER, password=PASSWORD)
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.putfo(io.BytesIO(b"sku;qty\n1;5\n"), "/inbox/during-flood.csv")
            sftp.close()
        finally:
            transport.close()
            sock.close()
        service.gate.flush_log(everything=True)
    assert [a.original_name for a in spool.wait(1)] == ["during-flood.csv"]
    refused = [e for e in logs if e["event"] == "connection_refused"]
    # every refused connection is in the log: one line each, or counted in a line's repeats
    assert sum(1 + e["repeats"] for e in refused) == service.gate.refused_total >= 75
    assert len(refused) < service.gate.refused_total / 5  # a flood does not flood the log
    assert {e["remote_addr"] for e in refused} == {FLOODER}
    assert {e["reason"] for e in refused} <= {"max_unauthenticated_per_ip", "banned"}
    assert bans.is_banned(FLOODER, time.time())  # over its limit twice: banned
    assert not bans.is_banned("127.0.0.1", time.time())
    _one_line_each(caplog.records)


def test_an_ftp_flood_from_one_address_does_not_lock_out_another(
    start_ftp, bans: BanList, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    service: FtpService = start_ftp()
    caplog.set_level(logging.INFO)
    with capture_logs() as logs, flood(service.address, 80):
        wait_for(lambda: service.gate.refused_total >= 75, what="the flood to be refused")
        ftp_login(service, USER, PASSWORD)
        service.gate.flush_log(everything=True)
    refused = [e for e in logs if e["event"] == "connection_refused"]
    assert sum(1 + e["repeats"] for e in refused) == service.gate.refused_total >= 75
    assert len(refused) < service.gate.refused_total / 5
    assert {e["remote_addr"] for e in refused} == {FLOODER}
    assert bans.is_banned(FLOODER, time.time())
    _one_line_each(caplog.records)


def test_a_connection_that_does_not_log_in_within_auth_timeout_is_hung_up(start_sftp) -> None:  # type: ignore[no-untyped-def]
    service: SftpService = start_sftp(auth_timeout=1)
    with capture_logs() as logs, socket.create_connection(service.address, timeout=WAIT) as silent:
        assert silent.recv(100).startswith(b"SSH-2.0-")  # the server's banner; we say nothing back
        while silent.recv(100):  # until the server hangs up
            pass
    assert [e["event"] for e in logs if e["event"] == "login_timeout"] == ["login_timeout"]
    wait_for(lambda: service.gate.counts() == {"connections": 0, "unauthenticated": 0},
             what="the slot to be released")


def test_refusals_of_one_address_within_a_second_are_one_line_with_a_count() -> None:
    from daemon.ingest.endpoints.gate import Gate, Limits

    clock = [1000.0]
    gate = Gate("sftp", Limits(max_per_ip=1, max_unauthenticated_per_ip=1), BanList(BanPolicy(threshold=100)),
                clock=lambda: clock[0])
    with capture_logs() as logs:
        assert not isinstance(gate.admit("10.0.0.1"), str)
        for _ in range(4):
            assert gate.admit("10.0.0.1") == "max_per_ip"
        assert not isinstance(gate.admit("10.0.0.2"), str)  # another address is not held back
        clock[0] += 1.5
        gate.flush_log()
        assert gate.admit("10.0.0.1") == "max_per_ip"
    lines = [(e["remote_addr"], e["reason"], e["repeats"]) for e in logs if e["event"] == "connection_refused"]
    assert lines == [("10.0.0.1", "max_per_ip", 0), ("10.0.0.1", "max_per_ip", 2),
                     ("10.0.0.1", "max_per_ip", 0)]  # 1 + 0, then the other 3, then 1
    assert gate.refused_total == 5


def test_an_ftp_client_that_does_not_log_in_within_auth_timeout_is_hung_up(start_ftp) -> None:  # type: ignore[no-untyped-def]
    service: FtpService = start_ftp(auth_timeout=1)
    with capture_logs() as logs, ftplib.FTP(timeout=WAIT) as ftp:
        ftp.connect(*service.address)
        with pytest.raises(ftplib.error_temp, match="421 Login timed out"):
            ftp.getresp()  # nothing sent: the next thing heard is the hang-up
    assert [e["protocol"] for e in logs if e["event"] == "login_timeout"] == ["ftp"]
    wait_for(lambda: service.gate.counts() == {"connections": 0, "unauthenticated": 0},
             what="the slot to be released")


def test_a_logged_in_ftp_client_is_not_hung_up_at_auth_timeout(start_ftp) -> None:  # type: ignore[no-untyped-def]
    service: FtpService = start_ftp(auth_timeout=1)
    with ftplib.FTP(timeout=WAIT) as ftp:
        ftp.connect(*service.address)
        ftp.login(USER, PASSWORD)
        time.sleep(1.5)  # past auth_timeout, well within idle_timeout
        ftp.voidcmd("NOOP")
        assert service.gate.counts() == {"connections": 1, "unauthenticated": 0}
