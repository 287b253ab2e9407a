"""An honest SFTP login while another address floods the endpoint.

    python -m bench flood [--flood 300] [--logins 5]

Our SftpService on loopback, with its default limits and real bcrypt. The
honest client, from 127.0.0.1, connects, logs in with a password and lists
the root: that is the time measured, --logins times, one after another.

1. baseline: no flood.
2. flood, bans on: --flood connections from 127.0.0.2 that never say a word,
   held open; each one the server closes is opened again at once, so the
   flood holds on for as long as the logins take. With the default scores
   the flooder is banned after its second refused connection.
3. flood, limits only (``score_limit_exceeded = 0``): the flooder is never
   banned and keeps its pre-login slots full, as a flood from an address
   that must not be banned would.

Printed: median and worst login in each, the ratio to the baseline, the
target (at most 2 s), and the log lines the refusals took (one per address
and reason a second, with a count: ``daemon.ingest.endpoints.gate``).
Linux routes 127.0.0.0/8 to loopback, so 127.0.0.2 is another address.
"""

from __future__ import annotations

import argparse
import errno
import io
import multiprocessing
import selectors
import shutil
import socket
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Self

import paramiko

from daemon.auth.accounts import MemoryAuthenticator
from daemon.auth.bans import BanList, BanPolicy
from daemon.ingest.endpoints.sftp import SftpConfig, SftpService
from daemon.logs import configure_logging

USER, PASSWORD = "bench", "bench-pass"
HONEST, FLOODER = "127.0.0.1", "127.0.0.2"
TARGET_S = 2.0


class Flood:
    """``count`` silent connections from FLOODER, each reopened as soon as the server closes it.

    In a process of its own, as an attacker is: in ours it would take the
    GIL from the server it floods, and measure that instead.
    """

    def __init__(self, address: tuple[str, int], count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._reopened = ctx.Value("q", 0)
        self._process = ctx.Process(target=_flood, args=(address, count, self._stop, self._reopened),
                                    name="flood", daemon=True)

    @property
    def reopened(self) -> int:
        return int(self._reopened.value)

    def __enter__(self) -> Self:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(30)


def _open(sel: selectors.BaseSelector, address: tuple[str, int]) -> None:
    s = socket.socket()
    s.setblocking(False)
    s.bind((FLOODER, 0))
    code = s.connect_ex(address)
    if code not in (0, errno.EINPROGRESS):
        s.close()
        return
    sel.register(s, selectors.EVENT_READ)


def _flood(address: tuple[str, int], count: int, stop: Any, reopened: Any) -> None:
    sel = selectors.DefaultSelector()
    try:
        for _ in range(count):
            _open(sel, address)
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(4096)  # an accepted one reads the server's banner: hold on
                except OSError:
                    data = b""
                if not data:  # refused or hung up: open another
                    sel.unregister(s)
                    s.close()
                    with reopened.get_lock():
                        reopened.value += 1
                    _open(sel, address)
            for _ in range(count - len(sel.get_map())):  # a connect that could not even start
                _open(sel, address)
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()


def login_seconds(address: tuple[str, int]) -> tuple[float, float]:
    """(seconds to log in and list the root, of which waiting for the server's first byte)."""
    t0 = time.perf_counter()
    sock = socket.create_connection(address, timeout=60, source_address=(HONEST, 0))
    sock.recv(1, socket.MSG_PEEK)  # the server's banner: we were accepted (paramiko reads it next)
    accepted = time.perf_counter() - t0
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = 60
    try:
        transport.connect(username=USER, password=PASSWORD)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sftp.listdir("/")
        sftp.close()
    finally:
        transport.close()
        sock.close()
    return time.perf_counter() - t0, accepted


class LineCount(io.TextIOBase):
    """A log stream that only counts lines."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, s: str) -> int:
        self.lines += s.count("\n")
        return len(s)


def run(tmp: Path, name: str, flood: int, logins: int, policy: BanPolicy) -> list[float]:
    """The login times of one run, printed with what the flood cost."""
    root = tmp / "root"
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    (root / "results").mkdir(exist_ok=True)
    auth = MemoryAuthenticator()  # production bcrypt: the login is what is timed
    auth.add(USER, source_id=1, root=root, password=PASSWORD)
    log = LineCount()
    configure_logging("json", "info", stream=log)  # type: ignore[arg-type]
    service = SftpService(SftpConfig(host="127.0.0.1", port=0, host_key_path=tmp / "host_key"),
                          auth, BanList(policy), lambda arrival: 1)
    service.start()
    results: list[tuple[float, float]] = []
    reopened = 0
    # the honest client in a process of its own too: in ours, its paramiko
    # would compete with the server for the GIL, which a real client does not
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
        client.submit(time.sleep, 0).result()  # started and imported before anything is timed
        try:
            if flood:
                with Flood(service.address, flood) as f:
                    deadline = time.monotonic() + 30
                    while service.gate.refused_total < flood - 20 and time.monotonic() < deadline:
                        time.sleep(0.05)  # the flood is in before the first login
                    results = [client.submit(login_seconds, service.address).result() for _ in range(logins)]
                    reopened = f.reopened
            else:
                results = [client.submit(login_seconds, service.address).result() for _ in range(logins)]
        finally:
            service.stop(timeout=30)
    refused = service.gate.refused_total
    times = [t for t, _ in results]
    median, worst = statistics.median(times), max(times)
    accept = statistics.median(a for _, a in results)
    print(f"{name:<22} login median {median:6.3f} s  worst {worst:6.3f} s  (accepted after {accept:.3f} s)",
          end="")
    if flood:
        print(f"  refused {refused} (reopened {reopened}), in {log.lines} log lines")
    else:
        print()
    return times


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench flood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flood", type=int, default=300, help="connections the flooder holds open")
    p.add_argument("--logins", type=int, default=5, help="honest logins timed in each run")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="stockdrop-bench-flood-"))
    print(f"# flood benchmark: {args.flood} connections from {FLOODER}, {args.logins} logins "
          f"from {HONEST}, default limits (SftpConfig)")
    try:
        base = run(tmp, "baseline (no flood)", 0, args.logins, BanPolicy())
        banned = run(tmp, "flood, bans on", args.flood, args.logins, BanPolicy())
        limits = run(tmp, "flood, limits only", args.flood, args.logins, BanPolicy(score_limit_exceeded=0))
    finally:
        configure_logging("console", "warning", stream="stderr")
        shutil.rmtree(tmp, ignore_errors=True)
    b = statistics.median(base)
    worst = 0.0
    for name, times in (("bans on", banned), ("limits only", limits)):
        worst = max(worst, max(times))
        print(f"ratio to baseline, {name}: median {statistics.median(times) / b:.2f}x, "
              f"worst {max(times) / b:.2f}x")
    verdict = "met" if worst <= TARGET_S else "MISSED"
    print(f"target: every login under a flood within {TARGET_S:.0f} s: {verdict} (worst {worst:.3f} s)")
    return 0 if worst <= TARGET_S else 1
