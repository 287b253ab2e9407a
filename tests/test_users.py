"""Accounts: the CLI, the database-backed authenticator, and the running daemon's endpoints."""

from __future__ import annotations

import ftplib
import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from daemon import exitcodes
from daemon.auth.accounts import DbAuthenticator
from daemon.db.engine import session_factory
from daemon.ingest.sources import SourceBook
from daemon.settings import load_settings
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config


@pytest.fixture
def config(tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]) -> Path:
    path = write_config(tmp_path / "conf", ONE_WAREHOUSE, database_url=database.url)
    assert run_cli(capsys, "-c", path, "db", "upgrade").code == 0
    return path


def add_user(capsys, config: Path, monkeypatch, password: str = "correct horse") -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    res = run_cli(capsys, "-c", config, "user", "add", "wh1", "--password-stdin")
    assert res.code == 0, res.err


def test_an_account_logs_in_with_its_password_only_and_is_jailed_to_its_source(
    config: Path, database: Database, capsys, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    add_user(capsys, config, monkeypatch)
    users = run_cli(capsys, "-c", config, "user", "list", "--json").json()["users"]
    assert [(u["username"], u["source"], u["has_password"]) for u in users] == [("acme-wh1", "wh1", True)]
    settings = load_settings(config)
    sessions = session_factory(database.engine)
    with sessions() as s:
        book = SourceBook.load(s, settings)
    auth = DbAuthenticator(sessions, book)
    account = auth.check_password("acme-wh1", "correct horse")
    assert account is not None and account.root == book.by_name("acme", "wh1").folder  # type: ignore[union-attr]
    assert auth.check_password("acme-wh1", "wrong") is None
    assert auth.check_password("nobody", "correct horse") is None
    # The hash, never the password, is stored.
    from sqlalchemy import select

    from daemon.db.models import Account

    with sessions() as s:
        stored = s.scalar(select(Account.password_hash))
    assert stored and "correct horse" not in stored and stored.startswith("bcrypt-sha256$")


def test_passwd_and_remove_take_effect_at_the_next_login(config: Path, database: Database, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    add_user(capsys, config, monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO("another password\n"))
    assert run_cli(capsys, "-c", config, "user", "passwd", "acme-wh1", "--password-stdin").code == 0
    sessions = session_factory(database.engine)
    with sessions() as s:
        auth = DbAuthenticator(sessions, SourceBook.load(s, load_settings(config)))
    assert auth.check_password("acme-wh1", "correct horse") is None
    assert auth.check_password("acme-wh1", "another password") is not None
    assert run_cli(capsys, "-c", config, "user", "remove", "acme-wh1").code == 0
    assert auth.check_password("acme-wh1", "another password") is None


def test_a_public_key_is_accepted_for_sftp(config: Path, database: Database, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if key is None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        key = paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode()))
    pub = tmp_path / "id.pub"
    pub.write_text(f"{key.get_name()} {key.get_base64()} me@laptop\n")
    res = run_cli(capsys, "-c", config, "user", "add-key", "wh1", pub)
    assert res.code == 0 and "SHA256:" in res.out
    sessions = session_factory(database.engine)
    with sessions() as s:
        auth = DbAuthenticator(sessions, SourceBook.load(s, load_settings(config)))
    assert auth.check_key("acme-wh1", key) is not None
    assert auth.has_keys("acme-wh1")
    assert run_cli(capsys, "-c", config, "user", "add-key", "wh1", pub).code == exitcodes.FAILURE


def test_user_add_needs_exactly_one_password_option(config: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    res = run_cli(capsys, "-c", config, "user", "add", "wh1")
    assert res.code == exitcodes.FAILURE and "--password-stdin" in res.err
    gen = run_cli(capsys, "-c", config, "user", "add", "wh1", "--generate", "--username", "robot")
    assert gen.code == 0 and "password: " in gen.out


class _Lines:
    """Reads a process's stdout in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[dict] = []
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def wait(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.lines:
                if entry.get("event") == event:
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no {event} in {[e.get('event') for e in self.lines]}")


def test_the_daemon_serves_ftp_and_sftp_to_its_accounts(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, "[listeners.ftp]\nenabled = true\nport = 0\n"
                       "[listeners.sftp]\nenabled = true\nport = 0\n" + ONE_WAREHOUSE)
    assert run_cli(capsys, "-c", cfg, "db", "upgrade").code == 0
    add_user(capsys, cfg, monkeypatch)
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logs = _Lines(proc)
        ftp_port = logs.wait("ftp_listening")["port"]
        sftp_port = logs.wait("sftp_listening")["port"]
        logs.wait("ready")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", ftp_port, timeout=30)
            ftp.login("acme-wh1", "correct horse")
            ftp.storbinary("STOR /inbox/a.csv", io.BytesIO(b"sku,quantity\nA,4\n"))
        transport = paramiko.Transport(("127.0.0.1", sftp_port))
        transport.connect(username="acme-wh1", password="correct horse")
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp.open("/inbox/b.csv.part", "wb") as fh:
            fh.write(b"sku,quantity\nB,5\n")
        sftp.posix_rename("/inbox/b.csv.part", "/inbox/b.csv")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            hist = run_cli(capsys, "-c", cfg, "history", "--json").json()["uploads"]
            if len(hist) == 2 and all(h["status"] == "applied" for h in hist):
                break
            time.sleep(0.2)
        assert sorted((h["original_name"], h["protocol"], h["user"]) for h in hist) == [
            ("a.csv", "ftp", "acme-wh1"), ("b.csv", "sftp", "acme-wh1")]
        inv = run_cli(capsys, "-c", cfg, "inventory", "--source", "wh1", "--json").json()["inventory"]
        assert {r["sku"]: r["quantity"] for r in inv} == {"A": 4, "B": 5}
        # Result files are written just after the outcome commits: wait for both.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [n for n in sftp.listdir("/results") if n.endswith(".result.csv")]
            if len(names) == 2:
                break
            time.sleep(0.1)
        assert len(names) == 2
        sftp.close()
        transport.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == exitcodes.OK


def test_a_market_account_uploads_orders_over_ftp_into_the_market_inbox(
    tmp_path: Path, capsys, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    cfg = write_config(tmp_path, "[listeners.ftp]\nenabled = true\nport = 0\n" + ONE_WAREHOUSE
                       + '\n[[merchants.markets]]\nname = "shop"\n')
    assert run_cli(capsys, "-c", cfg, "db", "upgrade").code == 0
    assert run_cli(capsys, "-c", cfg, "set", "A", "5", "--source", "wh1").code == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("market password\n"))
    res = run_cli(capsys, "-c", cfg, "user", "add", "--market", "shop", "--password-stdin")
    assert res.code == 0 and "acme-shop-orders" in res.out, res.err
    listed = run_cli(capsys, "-c", cfg, "user", "list", "--json").json()["users"]
    assert listed[0]["source"] == "market:shop/orders"
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logs = _Lines(proc)
        port = logs.wait("ftp_listening")["port"]
        logs.wait("ready")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", port, timeout=30)
            ftp.login("acme-shop-orders", "market password")
            ftp.storbinary("STOR /inbox/orders.csv", io.BytesIO(
                b"order_id,line_id,sku,quantity,ordered_at\nO-1,1,A,2,2026-11-29T10:00:00Z\n"))
        deadline = time.monotonic() + 60
        hist: list[dict] = []
        while time.monotonic() < deadline:
            hist = run_cli(capsys, "-c", cfg, "history", "--json").json()["uploads"]
            if hist and hist[0]["status"] not in ("received", "processing"):
                break
            time.sleep(0.2)
        assert [(h["kind"], h["source"], h["status"]) for h in hist] == [("orders", "market:shop", "applied")]
        inv = run_cli(capsys, "-c", cfg, "inventory", "--sku", "A", "--source", "wh1", "--json").json()
        assert inv["inventory"][0]["quantity"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_a_statuses_login_is_jailed_to_the_warehouses_statuses_folder(
    tmp_path: Path, database: Database, capsys, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    body = ONE_WAREHOUSE.replace('unknown_sku = "create"', 'unknown_sku = "create"\n'
                                 '[merchants.sources.orders_export]\nfolder = "out"')
    config = write_config(tmp_path / "conf", body, database_url=database.url)
    assert run_cli(capsys, "-c", config, "db", "upgrade").code == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("status pw\n"))
    res = run_cli(capsys, "-c", config, "user", "add", "wh1", "--kind", "statuses", "--password-stdin")
    assert res.code == 0 and "acme-wh1-statuses for acme/wh1/statuses" in res.out
    sessions = session_factory(database.engine)
    with sessions() as s:
        book = SourceBook.load(s, load_settings(config))
    account = DbAuthenticator(sessions, book).check_password("acme-wh1-statuses", "status pw")
    info = book.by_name("acme", "wh1")
    assert account is not None and info is not None and info.statuses is not None
    # Its uploads arrive as status files of wh1, in a folder of their own (which `db upgrade` made).
    assert (account.root, account.source_id, account.kind) == (info.statuses, info.id, "statuses")
    assert (info.statuses / "inbox").is_dir() and (info.statuses / "results").is_dir()
    # A source sent no orders has no status folder to log in to.
    plain = run_cli(capsys, "-c", write_config(tmp_path / "plain", ONE_WAREHOUSE, database_url=database.url),
                    "user", "add", "wh1", "--kind", "statuses", "--generate")
    assert plain.code == exitcodes.FAILURE and "has no [merchants.sources.orders_export]" in plain.err


def test_the_daemon_keeps_its_bans_in_the_database_for_ban_list(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, 'node_id = "box-1"\n[listeners.ftp]\nenabled = true\nport = 0\n'
                       "[listeners.bans]\nthreshold = 3\n" + ONE_WAREHOUSE)
    assert run_cli(capsys, "-c", cfg, "db", "upgrade").code == 0
    add_user(capsys, cfg, monkeypatch)
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logs = _Lines(proc)
        ftp_port = logs.wait("ftp_listening")["port"]
        logs.wait("ready")
        for user in ("acme-wh1", "nobody"):  # 1 + 2 points
            with ftplib.FTP() as ftp:
                ftp.connect("127.0.0.1", ftp_port, timeout=30)
                with pytest.raises((ftplib.error_perm, ftplib.error_temp)):
                    ftp.login(user, "wrong")
        assert logs.wait("login_ban")["reason"] == "failed logins as acme-wh1 x1; failed logins as nobody x1"
        [ban] = run_cli(capsys, "-c", cfg, "ban", "list", "--json").json()["bans"]
        assert (ban["address"], ban["node"], ban["active"]) == ("127.0.0.1", "box-1", True)
        with ftplib.FTP() as ftp, pytest.raises(ftplib.error_temp, match="421"):
            ftp.connect("127.0.0.1", ftp_port, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == exitcodes.OK
