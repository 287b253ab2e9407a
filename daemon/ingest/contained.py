"""Read uploaded files in warm, resource-limited worker processes.

A native reader can panic (pyo3 ``PanicException`` is a ``BaseException``),
abort the process, balloon in memory or never return. Any of these must reject
the one file, never the daemon. So every file a sender gives us is read here,
before any transaction: quantity feeds, order and cancellation files, and
listings. Workers are spawned once and reused so a small upload pays only a
pipe round trip; a worker that was killed or died is replaced. A feed comes
back as Arrow IPC (cheap for a million rows), the other kinds pickled.
"""

from __future__ import annotations

import atexit
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

import polars as pl

from daemon.errors import FeedError
from daemon.formats.feeds import ParsedFeed, ParseOptions, RowError
from daemon.formats.listings import ListingFile
from daemon.formats.orders import ParsedCancellations, ParsedOrders
from daemon.formats.statuses import ParsedStatuses

_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class TestFault(BaseException):
    """Raised inside a worker by the ``fault="raise"`` test hook (like a panic)."""


def _die_with(parent: int) -> None:
    """End this worker as soon as its parent is gone, even in the middle of a parse.

    A worker runs in a session of its own (so a terminal's Ctrl-C does not
    reach it), so nothing else stops it when the daemon or a one-shot
    ``stockdrop upload`` is killed: it would parse on at full CPU for nobody.
    The pipe cannot tell it either while it parses. An orphan is adopted by
    another process, so its parent pid changes; the native readers release
    the GIL, so this thread runs during a parse.
    """
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _serve(fd: int, parent: int | None = None) -> None:
    """Entry point of a worker process (started by ``_Worker``)."""
    import resource

    if parent is not None:
        threading.Thread(target=_die_with, args=(parent,), name="die-with-parent", daemon=True).start()
    conn = Connection(fd)

    # Warm the imports before the first file.
    from daemon.formats.feeds import parse_feed
    from daemon.formats.listings import read_listings
    from daemon.formats.orders import read_cancellations, read_orders
    from daemon.formats.statuses import read_statuses

    readers = {"orders": read_orders, "cancellations": read_cancellations, "listings": read_listings,
               "statuses": read_statuses}
    conn.send(("ready",))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        kind, path, options, memory_bytes, fault = request
        # RLIMIT_AS counts address space, not resident memory, and polars'
        # allocator and thread stacks reserve far more than they touch (about
        # 1-3 GB of VmSize once warm). So the limit is "this much *more*
        # than now": a runaway parse still hits it, a warm worker does not.
        limit = _vm_size() + memory_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        blob = b""
        meta: tuple[str, Any]
        try:
            _inject(fault, memory_bytes)
            if kind != "feed":
                meta = ("ok", readers[kind](Path(path)))
            else:
                feed = parse_feed(Path(path), options)
                # A tmpfs file beats pushing tens of MB through the socket; the
                # parent reads and unlinks it.
                handle, name = tempfile.mkstemp(prefix="stockdrop-parse-", suffix=".arrow", dir=_SCRATCH)
                with os.fdopen(handle, "wb") as sink:
                    feed.frame.write_ipc(sink, compression="uncompressed")
                blob = name.encode()
                meta = ("ok", (
                    [(e.row, e.column, e.value, e.message, e.sku) for e in feed.errors], feed.warnings,
                    feed.total_rows, feed.encoding, feed.delimiter, feed.sheet, feed.header,
                ))
                del feed  # held on, it would sit in memory through the next request's parse
        except FeedError as exc:
            meta = ("feed_error", str(exc))
        except MemoryError:
            meta = ("crash", f"the parser ran out of memory (limit {memory_bytes:,} bytes)")
        except BaseException as exc:  # noqa: BLE001 - panics are BaseException; report, don't die
            meta = ("crash", f"the parser failed: {type(exc).__name__}: {exc}")
        conn.send(meta)
        conn.send_bytes(blob)
        del meta  # the row errors can be many; the same goes for them


RECYCLE_RSS_BYTES = 256 * 1024 * 1024


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _vm_size() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _inject(fault: str | None, memory_bytes: int) -> None:
    """Test hooks: behave like the failures containment must survive."""
    if fault == "hang":
        time.sleep(3600)
    elif fault == "raise":
        raise TestFault("injected failure")
    elif fault == "abort":
        os.abort()
    elif fault == "memory":
        _hog = bytearray(memory_bytes * 2)


class _Worker:
    # A fresh interpreter via subprocess rather than multiprocessing 'spawn':
    # spawn re-runs the parent's __main__ module in the child, which breaks
    # for any entry point without a __main__ guard; forking a threaded daemon
    # is unsafe. The pipe is a socketpair wrapped in a multiprocessing
    # Connection for its framing.
    def __init__(self) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # Fewer glibc malloc arenas: each reserves 64 MB of address space per
        # thread, which would count against RLIMIT_AS for nothing.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        # The allocator setting (daemon/__init__.py) comes with os.environ: an
        # idle worker returns the last big file's memory while the daemon
        # applies it.
        code = f"from daemon.ingest.contained import _serve; _serve({child.fileno()}, {os.getpid()})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], pass_fds=(child.fileno(),), env=env,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        child.close()
        self.conn = Connection(parent.detach())
        self._ready = False
        self._ready_lock = threading.Lock()  # warm() may wait while a caller checks it out

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the worker has its imports done (it says so once, when it has)."""
        with self._ready_lock:
            if not self._ready and self.conn.poll(timeout_s):
                self._ready = self.conn.recv() == ("ready",)
            return self._ready

    def call(self, request: tuple[Any, ...], timeout_s: float) -> tuple[tuple[str, Any], bytes]:
        deadline = time.monotonic() + timeout_s
        try:
            started = self.wait_ready(timeout_s)
        except (EOFError, OSError):
            started = False
        if not started:
            self.kill()
            raise FeedError(f"the parser process did not start ({self._how()}); the file was rejected")
        self.conn.send(request)
        if not self.conn.poll(max(deadline - time.monotonic(), 0)):
            self.kill()
            raise FeedError(f"the parser did not finish within {timeout_s:g} s; the file was rejected")
        try:
            meta = self.conn.recv()
            if not self.conn.poll(max(deadline - time.monotonic(), 1.0)):
                raise EOFError
            blob = self.conn.recv_bytes()
        except (EOFError, OSError):
            self.kill()
            raise FeedError(f"the parser process died ({self._how()}); the file was rejected") from None
        return meta, blob

    def _how(self) -> str:
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = ", likely out of memory" if name in ("SIGABRT", "SIGKILL", "SIGSEGV") else ""
            return f"killed by {name}{hint}"
        return f"exit code {code}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if not self.conn.closed:
            self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.process.wait(2)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()


class ParserPool:
    """Up to ``size`` reusable worker processes; thread-safe, one file per worker at a time.

    Workers start on demand (``warm`` starts the first one ahead of time) and
    stop with ``close``; a pool still open when the interpreter exits is
    closed then. Each file may take ``timeout_s``, and ``memory_bytes`` more
    than an idle worker holds, unless a call says otherwise.
    """

    def __init__(self, size: int = 2, *, timeout_s: float = 120,
                 memory_bytes: int = 2 * 1024**3) -> None:
        if size < 1:
            raise ValueError("a parser pool needs at least one worker")
        self.size = size
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._slots = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._all: set[_Worker] = set()
        self._closed = False
        _open_pools.add(self)

    def warm(self, wait_s: float = 0.0) -> bool:
        """Start one worker now so the first file does not pay the start-up.

        With ``wait_s``, wait up to that long for a worker to have its
        imports done; returns whether one has.
        """
        with self._lock:
            if not self._all and not self._closed:
                worker = _Worker()
                self._all.add(worker)
                self._idle.put(worker)
            workers = list(self._all)
        if not wait_s or not workers:
            return False
        try:
            return workers[0].wait_ready(wait_s)
        except (EOFError, OSError):  # it died while starting: the first call replaces it
            return False

    def parse(self, path: Path, options: ParseOptions, *, timeout_s: float | None = None,
              memory_bytes: int | None = None, fault: str | None = None) -> ParsedFeed:
        """A quantity feed, as ``formats.feeds.parse_feed`` reads it."""
        payload, blob = self._call("feed", path, options, timeout_s, memory_bytes, fault)
        errors, warnings, total, encoding, delimiter, sheet, header = payload
        name = blob.decode()
        try:
            frame = pl.read_ipc(name)
        finally:
            os.unlink(name)
        return ParsedFeed(
            frame=frame, errors=[RowError(*e) for e in errors],
            warnings=warnings, total_rows=total, encoding=encoding, delimiter=delimiter,
            sheet=sheet, header=header,
        )

    def read_orders(self, path: Path, *, fault: str | None = None) -> ParsedOrders:
        result, _ = self._call("orders", path, None, fault=fault)
        assert isinstance(result, ParsedOrders)
        return result

    def read_cancellations(self, path: Path, *, fault: str | None = None) -> ParsedCancellations:
        result, _ = self._call("cancellations", path, None, fault=fault)
        assert isinstance(result, ParsedCancellations)
        return result

    def read_statuses(self, path: Path, *, fault: str | None = None) -> ParsedStatuses:
        result, _ = self._call("statuses", path, None, fault=fault)
        assert isinstance(result, ParsedStatuses)
        return result

    def read_listings(self, path: Path, *, fault: str | None = None) -> ListingFile:
        result, _ = self._call("listings", path, None, fault=fault)
        assert isinstance(result, ListingFile)
        return result

    def _call(self, kind: str, path: Path, options: ParseOptions | None, timeout_s: float | None = None,
              memory_bytes: int | None = None, fault: str | None = None) -> tuple[Any, bytes]:
        if self._closed:
            raise RuntimeError("the parser pool is closed")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        memory_bytes = self.memory_bytes if memory_bytes is None else memory_bytes
        with self._slots:
            worker = self._checkout()
            try:
                meta, blob = worker.call((kind, str(path), options, memory_bytes, fault), timeout_s)
                if meta[0] == "crash":
                    worker.kill()  # a panic or MemoryError may leave it damaged: recycle
                elif _rss_bytes(worker.process.pid) > RECYCLE_RSS_BYTES:
                    # A big file leaves the worker's allocator holding hundreds
                    # of MB for the rest of the daemon's life; a fresh worker
                    # costs a fraction of a second, and only after big files.
                    worker.kill()
            finally:
                self._checkin(worker)
        status, payload = meta
        if status == "feed_error":
            raise FeedError(payload)
        if status == "crash":
            raise FeedError(f"{payload}; the file was rejected")
        return payload, blob

    def _checkout(self) -> _Worker:
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            worker = None
        if worker is not None and worker.alive():
            return worker
        with self._lock:
            if worker is not None:
                self._all.discard(worker)
            worker = _Worker()
            self._all.add(worker)
            return worker

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                self._all.discard(worker)
                worker.kill()
                return
            if not worker.alive():
                # Start the replacement now: it warms up while nobody waits.
                self._all.discard(worker)
                worker.kill()
                worker = _Worker()
                self._all.add(worker)
        self._idle.put(worker)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_open_pools: weakref.WeakSet[ParserPool] = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_open_pools):
        pool.close()
