"""Watched drop folders: files written by the system's sshd, rsync, or any tool.

Events only say "look at this file"; a file is taken once it has settled:
size and mtime unchanged for ``settle_seconds``, counted from when *we*
first saw that size, never from the file's mtime (which a client may set to
anything). With inotify, a file someone was seen writing (created or
modified) is also not taken until that writer closed it (``IN_CLOSE_WRITE``,
watchdog's ``FileClosedEvent``): a writer that pauses longer than the settle
time keeps its file. The polling observer sees no opens or closes, so there
settling is all there is. Events can be lost, so a full scan runs at start
and a reconcile scan runs periodically; a file marked open whose close was
never seen is taken once it has been still for ``stale_open_seconds``.

Only the name is looked at here (``lstat``): what is not one plain regular
file is handed on so that intake records its refusal, never opened.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.ingest.arrival import Arrival
from daemon.ingest.claim import FileChanged, what_it_is
from daemon.ingest.names import DONE_SUFFIXES, is_marker, is_temporary
from daemon.ingest.sources import Inbox

log = structlog.get_logger(__name__)


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    stable_since: float  # monotonic time we first saw this size and mtime
    first_seen: datetime
    open: bool = False  # a writer was seen and has not closed it (inotify only)


class _Nudge(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher, key: int) -> None:
        self._watcher, self._source_id = watcher, key

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        path = getattr(event, "dest_path", "") or event.src_path
        # Our own reads open and close too, but never modify: only a write
        # marks a file open, and only a close after writing ends it.
        writing: bool | None = None
        if isinstance(event, FileCreatedEvent | FileModifiedEvent):
            writing = True
        elif isinstance(event, FileClosedEvent | FileMovedEvent):
            writing = False  # closed, or renamed in (the temporary-name convention)
        self._watcher.nudge(self._source_id, Path(str(path)), writing=writing)


class FolderWatcher:
    """One service for every inbox: sources' feeds, markets' orders and cancellations."""

    name = "watcher"

    def __init__(
        self, inboxes: list[Inbox], deliver: Callable[[Arrival], int], *,
        settle_seconds: float = 2.0, reconcile_seconds: float = 60.0, polling: bool = False,
        done_markers: bool = False, tick: float = 0.2, stale_open_seconds: float | None = None,
    ) -> None:
        # Keyed by position: a source and a market may share a database id.
        # Replaced, never changed in place: other threads iterate it.
        self._sources = dict(enumerate(inboxes))
        self._deliver = deliver
        self._settle = settle_seconds
        self._reconcile = reconcile_seconds
        self._polling = polling
        self._sees_closes = False  # set at start: inotify reports a writer's close
        # A close event lost (an inotify queue overflow) must not keep a file forever.
        self._stale_open = stale_open_seconds if stale_open_seconds is not None else max(
            5 * reconcile_seconds, 10 * settle_seconds)
        self._done_markers = done_markers
        self._tick = tick
        self._lock = threading.Lock()
        self._candidates: dict[tuple[int, Path], _Candidate] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None

    # -- service ---------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        observer = PollingObserver(timeout=1) if self._polling else Observer()
        # Only inotify reports closes; elsewhere (FSEvents, kqueue) a file marked
        # open would wait for a close that never comes.
        self._sees_closes = type(observer).__name__ == "InotifyObserver"
        for key, inbox in self._sources.items():
            inbox.path.mkdir(parents=True, exist_ok=True)
            observer.schedule(_Nudge(self, key), str(inbox.path), recursive=False)
        observer.start()
        self._observer = observer
        self.scan()  # files that arrived while we were down
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def check(self) -> None:
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError("the folder watcher thread died")

    def add(self, inboxes: list[Inbox]) -> None:
        """Watch more folders (a market added while running); what is in them is taken too."""
        with self._lock:
            start = len(self._sources)
            added = {start + i: inbox for i, inbox in enumerate(inboxes)}
            self._sources = {**self._sources, **added}
            observer = self._observer
        for key, inbox in added.items():
            inbox.path.mkdir(parents=True, exist_ok=True)
            if observer is not None:
                observer.schedule(_Nudge(self, key), str(inbox.path), recursive=False)
        self.scan()

    # -- discovery -------------------------------------------------------

    def nudge(self, source_id: int, path: Path, *, writing: bool | None = None) -> None:
        """Look at ``path``; ``writing`` is what the event said of its writer (None: nothing)."""
        name = path.name
        if is_marker(name):
            path = path.with_suffix("")  # NAME.done says: look at NAME now
            name = path.name
            writing = None
        if is_temporary(name) or path.parent != self._sources[source_id].path:
            return
        self._observe(source_id, path, writing=writing if self._sees_closes else None)

    def scan(self) -> None:
        for key, inbox in self._sources.items():
            try:
                entries = list(inbox.path.iterdir())
            except FileNotFoundError:
                inbox.path.mkdir(parents=True, exist_ok=True)
                continue
            for path in entries:
                if not is_temporary(path.name) and not is_marker(path.name):
                    self._observe(key, path)

    def _observe(self, source_id: int, path: Path, *, writing: bool | None = None) -> None:
        try:
            st = os.lstat(path)  # the name, never what a symlink points at
        except FileNotFoundError:
            with self._lock:
                self._candidates.pop((source_id, path), None)
            return
        if stat.S_ISDIR(st.st_mode):
            return
        now = time.monotonic()
        with self._lock:
            key = (source_id, path)
            seen = self._candidates.get(key)
            if seen is None:
                seen = self._candidates[key] = _Candidate(st.st_size, st.st_mtime_ns, now, datetime.now(UTC))
            elif (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
                seen.size, seen.mtime_ns, seen.stable_since = st.st_size, st.st_mtime_ns, now
            if writing is not None:
                # A link, pipe or device gets no close event (link(), mkfifo()):
                # intake refuses it once it settled, so it must not wait for one.
                seen.open = writing and what_it_is(st) is None

    # -- settling --------------------------------------------------------

    def _loop(self) -> None:
        next_scan = time.monotonic() + self._reconcile
        while not self._stop.wait(self._tick):
            if time.monotonic() >= next_scan:
                self.scan()
                next_scan = time.monotonic() + self._reconcile
            self.settle_once()

    def settle_once(self) -> None:
        with self._lock:
            keys = list(self._candidates)
        for key in keys:
            self._observe(*key)  # refresh: a change restarts the settle clock
            with self._lock:
                cand = self._candidates.get(key)
            if cand is None:
                continue
            still = time.monotonic() - cand.stable_since
            if still < self._settle or (cand.open and still < self._stale_open):
                continue
            if cand.open:
                log.warning("watch_close_not_seen", file=str(key[1]), still_s=round(still, 1),
                            note="no close event was seen for this file; taken as it is")
            source_id, path = key
            marker = self._marker_for(path)
            if self._done_markers and marker is None:
                continue
            with self._lock:
                self._candidates.pop(key, None)
            self._take(source_id, path, cand, marker)

    def _marker_for(self, path: Path) -> Path | None:
        for suffix in DONE_SUFFIXES:
            for candidate in (path.with_name(path.name + suffix), path.with_name(path.name + suffix.upper())):
                if candidate.exists():
                    return candidate
        return None

    def _take(self, key: int, path: Path, cand: _Candidate, marker: Path | None) -> None:
        inbox = self._sources[key]
        try:
            self._deliver(Arrival(path=path, source_id=inbox.source_id, market_id=inbox.market_id,
                                  kind=inbox.kind, original_name=path.name,
                                  protocol="watch", received_at=cand.first_seen, shared=True,
                                  settled=(cand.size, cand.mtime_ns)))
        except FileNotFoundError:
            return  # claimed by someone else (or removed) meanwhile
        except FileChanged as exc:
            # Written to while we claimed it: nothing was taken; it settles again first.
            log.info("watch_file_changed", file=str(path), reason=str(exc))
            self._observe(key, path)
            return
        except Exception:
            log.exception("watch_deliver_failed", file=str(path), inbox=str(inbox.path))
            return  # stays in the inbox; the next scan tries again
        if marker is not None:
            marker.unlink(missing_ok=True)
