"""Receiver figures, each against a ceiling measured in the same run.

    python -m bench receivers [--mb 200] [--uploads 50] [--repeats 3]

1. A --mb file uploaded over FTP on loopback to our FtpService (deliver claims
   it by a rename into a spool folder) against a bare pyftpdlib server, same
   ftplib client; median of --repeats runs each, alternating. Also printed: the
   wait from the last block sent to the 226, and (diagnostic) our service with
   completion_grace_s = 0, to show what the hold on the 226 costs.
2. The same over SFTP: our SftpService against a bare paramiko SFTP server
   (stock ``SFTPServer`` subsystem writing straight into a folder), same
   paramiko ``SFTPClient.put`` client.
3. Time from an FTP STOR's 226 to the upload's outcome (``applied``) through a
   real stack: migrated SQLite, Pipeline with 2 workers and a warm parser pool,
   FtpService delivering to it. p50 and p95 over --uploads 100-row feeds, sent
   one after another; one more upload first warms caches and is not counted.

MB here is MiB throughout (the file is --mb MiB; rates are MiB/s).
"""

from __future__ import annotations

import argparse
import ftplib
import logging
import os
import queue
import shutil
import socket
import statistics
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko
import structlog
from paramiko.common import DEFAULT_MAX_PACKET_SIZE, DEFAULT_WINDOW_SIZE
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from daemon.auth.accounts import MemoryAuthenticator
from daemon.auth.bans import BanList
from daemon.auth.hostkey import load_or_create_host_key
from daemon.ingest.arrival import Arrival
from daemon.ingest.endpoints.ftp import FtpConfig, FtpService
from daemon.ingest.endpoints.sftp import SftpConfig, SftpService

USER, PASSWORD = "bench", "bench-pass"
MB = 1024 * 1024
FTP_BLOCK = MB  # ftplib's 8 KiB default makes the Python client the bottleneck for both
# SftpService builds its Transports with paramiko's defaults and does not expose
# them, so the bare server and the client use exactly those: same window both sides.
WINDOW, PACKET = DEFAULT_WINDOW_SIZE, DEFAULT_MAX_PACKET_SIZE


# --- payload and helpers


def make_payload(path: Path, mb: int) -> None:
    with open(path, "wb") as f:  # random: nothing on the way can compress it
        f.writelines(os.urandom(MB) for _ in range(mb))


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]  # nearest rank


class SpoolDeliver:
    """deliver() that claims a file as intake does: one rename, same filesystem."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, arrival: Arrival) -> int:
        with self._lock:
            self.count += 1
            os.rename(arrival.path, self.folder / f"{self.count:04d}-{arrival.original_name}")
            return self.count

    def take(self, name: str) -> int:
        """Size of the spooled upload ``name``, removed so 200 MB files do not pile up."""
        [p] = [p for p in self.folder.iterdir() if p.name.endswith("-" + name)]
        size = p.stat().st_size
        p.unlink()
        return size


# --- FTP


@contextmanager
def bare_ftp(home: Path) -> Iterator[tuple[str, int]]:
    auth = DummyAuthorizer()
    auth.add_user(USER, PASSWORD, str(home), perm="elradfmwMT")
    handler = type("BareHandler", (FTPHandler,), {"authorizer": auth})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    stop = threading.Event()

    def run() -> None:  # the loop FtpService uses, so both stop the same way
        try:
            while not stop.is_set():
                server.serve_forever(timeout=0.2, blocking=False, handle_exit=False)
        finally:
            server.close_all()

    thread = threading.Thread(target=run, name="bare-ftp", daemon=True)
    thread.start()
    try:
        yield server.address[:2]
    finally:
        stop.set()
        thread.join(10)


def ftp_put(address: tuple[str, int], local: Path, remote: str) -> tuple[float, float]:
    """(seconds from STOR to its 226, seconds from the last block sent to the 226)."""
    with ftplib.FTP() as ftp:
        ftp.connect(*address, timeout=120)
        ftp.login(USER, PASSWORD)  # outside the timing: bcrypt is not throughput
        last = [0.0]
        with open(local, "rb") as f:
            t0 = time.perf_counter()
            ftp.storbinary(f"STOR {remote}", f, blocksize=FTP_BLOCK,
                           callback=lambda _b: last.__setitem__(0, time.perf_counter()))
            t1 = time.perf_counter()
    return t1 - t0, t1 - last[0]


# --- SFTP


class _BareAuth(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == USER and password == PASSWORD
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _BareHandle(paramiko.SFTPHandle):
    def stat(self) -> Any:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.writefile.fileno()))


class _BareFolder(paramiko.SFTPServerInterface):
    """The least an upload needs: open for writing and stat, under one folder."""

    home: Path  # set on a per-server subclass

    def _real(self, path: str) -> str:
        return str(self.home / path.lstrip("/"))

    def open(self, path: str, flags: int, attr: Any) -> Any:
        try:
            fd = os.open(self._real(path), flags | os.O_CREAT, 0o600)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        h = _BareHandle(flags)
        h.writefile = os.fdopen(fd, "wb")
        return h

    def stat(self, path: str) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    lstat = stat


@contextmanager
def bare_sftp(home: Path, key: paramiko.PKey) -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    folder = type("Folder", (_BareFolder,), {"home": home})
    transports: list[paramiko.Transport] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            t = paramiko.Transport(conn, default_window_size=WINDOW, default_max_packet_size=PACKET)
            t.add_server_key(key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, folder)
            t.start_server(event=threading.Event(), server=_BareAuth())
            transports.append(t)

    thread = threading.Thread(target=accept, name="bare-sftp", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        thread.join(10)
        listener.close()
        for t in transports:
            t.close()
            t.join(10)


def sftp_put(address: tuple[str, int], local: Path, remote: str) -> tuple[float, float]:
    """(seconds from open to the confirming stat, 0.0: no separate tail is measured)."""
    sock = socket.create_connection(address)
    t = paramiko.Transport(sock, default_window_size=WINDOW, default_max_packet_size=PACKET)
    try:
        t.connect(username=USER, password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(t, window_size=WINDOW, max_packet_size=PACKET)
        assert sftp is not None
        t0 = time.perf_counter()
        sftp.put(str(local), remote)  # pipelined writes, CLOSE, then a confirming stat
        elapsed = time.perf_counter() - t0
        sftp.close()
    finally:
        t.close()
    return elapsed, 0.0


# --- figures 1 and 2


def throughput(kind: str, tmp: Path, payload: Path, mb: int, repeats: int) -> None:
    size = payload.stat().st_size
    root = tmp / f"{kind}-src"
    (root / "inbox").mkdir(parents=True)
    spool = tmp / f"{kind}-spool"
    spool.mkdir()
    bare_home = tmp / f"{kind}-bare"
    (bare_home / "inbox").mkdir(parents=True)
    deliver = SpoolDeliver(spool)
    auth = MemoryAuthenticator(rounds=4)  # cheap bcrypt; login is outside the timing anyway
    auth.add(USER, source_id=1, root=root, password=PASSWORD)
    bans, limit = BanList(), max(size + 1, 512 * MB)
    # factories, started per upload: FtpService serves on pyftpdlib's process-wide
    # IOLoop.instance(), so two of them alive at once would share (and stop) one loop
    services: dict[str, Callable[[], Any]] = {}
    if kind == "ftp":
        services["ours"] = lambda: FtpService(
            FtpConfig(host="127.0.0.1", port=0, max_file_bytes=limit), auth, bans, deliver)
        # diagnostic only: the same service without the hold on the 226, to show its share
        services["ours, no grace"] = lambda: FtpService(
            FtpConfig(host="127.0.0.1", port=0, max_file_bytes=limit, completion_grace_s=0.0),
            auth, bans, deliver)
        bare_cm = bare_ftp(bare_home)
    else:
        key_path = tmp / "hostkey" / "ssh_host_ed25519_key"
        services["ours"] = lambda: SftpService(
            SftpConfig(host="127.0.0.1", port=0, host_key_path=key_path, max_file_bytes=limit),
            auth, bans, deliver)
        bare_cm = bare_sftp(bare_home, load_or_create_host_key(key_path))
    secs: dict[str, list[float]] = {who: [] for who in [*services, "bare"]}
    tails: dict[str, list[float]] = {who: [] for who in secs}
    put = ftp_put if kind == "ftp" else sftp_put
    with bare_cm as bare_addr:
        for i in range(repeats):  # alternate so drift (page cache, writeback) hits all alike
            for who, times in secs.items():
                name = f"{kind}-{i}-{len(who)}.bin"
                svc = None if who == "bare" else services[who]()
                if svc is not None:
                    svc.start()
                try:
                    addr = bare_addr if svc is None else svc.address
                    t, tail = put(addr, payload, f"/inbox/{name}")
                finally:
                    if svc is not None:
                        svc.stop()
                got = _take(bare_home / "inbox" / name) if svc is None else deliver.take(name)
                assert got == size, f"{kind} {who}: {got} of {size} bytes arrived"
                times.append(t)
                tails[who].append(tail)
    rate = {who: mb / statistics.median(ts) for who, ts in secs.items()}
    label = "FTP " if kind == "ftp" else "SFTP"
    print(f"{label} upload {mb} MB:  ours {rate['ours']:7.1f} MB/s  bare {rate['bare']:7.1f} MB/s  "
          f"ratio {rate['ours'] / rate['bare']:.2f}  (target >= 0.8; median of {repeats})")
    if kind == "ftp":
        grace = FtpConfig().completion_grace_s
        print(f"  last block sent -> 226, median:  ours {statistics.median(tails['ours']):.3f}s  "
              f"bare {statistics.median(tails['bare']):.3f}s  (ours holds the 226 a few round "
              f"trips, at most completion_grace_s = {grace}s)")
        nograce = rate["ours, no grace"]
        print(f"  diagnostic, ours with completion_grace_s = 0:  {nograce:7.1f} MB/s  "
              f"ratio {nograce / rate['bare']:.2f}")


def _take(path: Path) -> int:
    size = path.stat().st_size
    path.unlink()
    return size


# --- figure 3

STACK = """
data_dir = "{data}"
[ingest]
[[merchants]]
name = "bench"
timezone = "UTC"
[[merchants.sources]]
name = "wh"
[merchants.sources.feed]
scope = "full"
max_zeroed_percent = 100
unknown_sku = "create"
"""


def feed(i: int, rows: int) -> bytes:
    # distinct per upload (else it is a duplicate and skipped): quantities shift with i
    lines = ["sku,quantity"] + [f"SKU-{j:05d},{(j * 7 + i) % 500}" for j in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def latency(tmp: Path, uploads: int, rows: int) -> None:
    from sqlalchemy import select

    from daemon.db import migrate
    from daemon.db.catalog import sync_config
    from daemon.db.engine import make_engine, session_factory
    from daemon.db.markets import sync_markets
    from daemon.db.models import Upload
    from daemon.ingest.outcomes import Outcome
    from daemon.ingest.pipeline import Pipeline
    from daemon.ingest.sources import SourceBook
    from daemon.settings import parse_settings

    base = tmp / "stack"
    base.mkdir()
    settings = parse_settings(tomllib.loads(STACK.format(data=base / "data")), base=base)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        sync_config(s, settings, datetime.now(UTC))
        sync_markets(s, settings, datetime.now(UTC))
        book = SourceBook.load(s, settings)
    info = book.by_name("bench", "wh")
    assert info is not None
    info.inbox.mkdir(parents=True, exist_ok=True)  # as daemon.runtime.assemble does before the receivers
    info.results.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(settings, sessions, book, workers=2)
    outcomes: queue.Queue[tuple[float, Outcome]] = queue.Queue()
    process = pipeline.processor.process

    def stamped(upload_id: int) -> Outcome:
        # stamped in the worker right after the outcome is filed: no polling delay
        outcome = process(upload_id)
        outcomes.put((time.perf_counter(), outcome))
        return outcome

    pipeline.processor.process = stamped  # type: ignore[method-assign]
    pipeline.parsers.warm()
    pipeline.dispatcher.start()
    auth = MemoryAuthenticator(rounds=4)
    auth.add(USER, source_id=info.id, root=info.folder, password=PASSWORD)
    svc = FtpService(FtpConfig(host="127.0.0.1", port=0), auth, BanList(), pipeline.deliver)
    svc.start()
    lat: list[float] = []
    ids: list[int] = []
    try:
        with ftplib.FTP() as ftp:
            ftp.connect(*svc.address, timeout=60)
            ftp.login(USER, PASSWORD)
            for i in range(uploads + 1):  # upload 0 warms SQLAlchemy and caches; not counted
                data = feed(i, rows)
                src = tmp / "feed.csv"
                src.write_bytes(data)
                with open(src, "rb") as f:
                    ftp.storbinary(f"STOR /inbox/feed-{i:03d}.csv", f)
                t_226 = time.perf_counter()
                t_done, outcome = outcomes.get(timeout=60)
                assert outcome.status == "applied", outcome
                if i:
                    lat.append(t_done - t_226)
                    ids.append(outcome.upload_id)
    finally:
        svc.stop()
        pipeline.dispatcher.stop(10)
        pipeline.close()
    with sessions() as s:
        rows_db = s.execute(select(Upload.status, Upload.received_at, Upload.started_at,
                                   Upload.finished_at).where(Upload.id.in_(ids))).all()
    engine.dispose()
    assert len(rows_db) == uploads and all(r.status == "applied" for r in rows_db), rows_db
    queued = [(r.started_at - r.received_at).total_seconds() for r in rows_db]
    work = [(r.finished_at - r.started_at).total_seconds() for r in rows_db]
    print(f"226 -> applied, {rows}-row FTP upload:  p50 {statistics.median(lat) * 1000:.0f} ms  "
          f"p95 {pct(lat, 95) * 1000:.0f} ms  max {max(lat) * 1000:.0f} ms  "
          f"(target p95 <= 1000 ms; {uploads} uploads)")
    print(f"  from the history: received->started p50 {statistics.median(queued) * 1000:.0f} ms, "
          f"started->finished p50 {statistics.median(work) * 1000:.0f} ms "
          f"p95 {pct(work, 95) * 1000:.0f} ms")


# --- entry


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench receivers")
    p.add_argument("--mb", type=int, default=200, help="size of the throughput upload")
    p.add_argument("--repeats", type=int, default=3, help="throughput runs per server")
    p.add_argument("--uploads", type=int, default=50, help="uploads for the latency figure")
    p.add_argument("--rows", type=int, default=100, help="rows per latency upload")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # the receivers log every login and upload; keep the figures readable
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # paramiko logs "Socket exception: Connection reset" when a client hangs up
    # after its last reply; it does so for both servers and is not a failure
    logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
    tmp = Path(tempfile.mkdtemp(prefix="stockdrop-bench-rx-"))
    print(f"# receivers benchmark, {args.mb} MB x {args.repeats}, {args.uploads} uploads "
          f"of {args.rows} rows, in {tmp}")
    try:
        payload = tmp / "payload.bin"
        make_payload(payload, args.mb)
        throughput("ftp", tmp, payload, args.mb, args.repeats)
        throughput("sftp", tmp, payload, args.mb, args.repeats)
        payload.unlink()
        latency(tmp, args.uploads, args.rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0

