"""Remote SFTP pull: poll a warehouse's SFTP folder and take its finished files.

One thread per source with ``pull`` configured. Each poll connects (host key
pinned, never learned), lists the remote folder, and takes a file only when
its size and mtime are the same as in the previous listing. A file is
downloaded into the source's staging folder under a temporary name, checked
against the listed size, handed to intake, recorded in ``pulled_files``, and
only then deleted (or moved to ``processed/``) on the remote side. The record
is what keeps a file from being fetched twice when the remote removal fails.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import pulled
from daemon.db.pulled import Identity
from daemon.ingest.arrival import Arrival, Deliver
from daemon.ingest.names import is_marker, is_temporary
from daemon.ingest.sources import SourceInfo
from daemon.settings import PullSettings
from daemon.transports import TransportError
from daemon.transports.sftp import HostKeyRejected, SftpEndpoint, open_sftp

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 15 * 60.0
_CHUNK = 64 * 1024


@dataclass
class PollReport:
    """What one poll of one source did; remote paths throughout."""

    source_id: int
    listed: int = 0
    fetched: list[str] = field(default_factory=list)
    upload_ids: list[int] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)  # new or changed since the last listing
    known: list[str] = field(default_factory=list)  # fetched before: skipped
    removed: list[str] = field(default_factory=list)
    remove_failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # links, devices: never opened


@dataclass
class _State:
    """Per source, in memory: what the last listing showed and what we took."""

    previous: dict[str, tuple[int, int]] | None = None  # None: no listing since start
    # a second guard beside the database, for when recording a fetch failed
    fetched: set[Identity] = field(default_factory=set)
    warned: set[Identity] = field(default_factory=set)  # removal failures already logged
    refused: set[str] = field(default_factory=set)  # not-plain names already logged


def _listing(sftp: paramiko.SFTPClient, folder: str) -> dict[str, tuple[int, int]]:
    """Regular, finished-looking files: name -> (size, mtime)."""
    try:
        entries = sftp.listdir_attr(folder)
    except OSError as exc:
        raise TransportError(f"cannot list {folder}: {exc}") from exc
    out: dict[str, tuple[int, int]] = {}
    for attr in entries:
        name = attr.filename
        if is_temporary(name) or is_marker(name):
            continue
        if attr.st_mode is not None and not stat.S_ISREG(attr.st_mode):
            continue  # folders (processed/ among them), links, devices
        out[name] = (int(attr.st_size or 0), int(attr.st_mtime or 0))
    return out


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _utcnow() -> datetime:
    return datetime.now(UTC)


def endpoint(pull: PullSettings) -> SftpEndpoint:
    """The remote side of a pull, with its password read (an unset variable is a failed poll)."""
    try:
        password = pull.resolved_password()
    except ValueError as exc:
        raise TransportError(str(exc)) from exc
    return SftpEndpoint(host=pull.host, port=pull.port, user=pull.user, password=password,
                        key_file=pull.key_file, key_passphrase_env=pull.key_passphrase_env,
                        known_hosts=pull.known_hosts, host_key_fingerprint=pull.host_key_fingerprint,
                        timeout_seconds=pull.timeout_seconds)


# --- the service -------------------------------------------------------------


class PullService:
    """Polls every source that has ``pull`` settings; one thread per source."""

    name = "pull"

    def __init__(
        self, sources: list[SourceInfo], sessions: sessionmaker[Session], deliver: Deliver,
        *, clock: Callable[[], datetime] = _utcnow, max_backoff: float = MAX_BACKOFF_S,
    ) -> None:
        self.sources = [s for s in sources if s.settings.pull is not None]
        self._sessions = sessions
        self._deliver = deliver
        self._clock = clock
        self._max_backoff = max_backoff
        self._states = {s.id: _State() for s in self.sources}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: dict[int, BaseException] = {}
        self._active: dict[int, paramiko.Transport] = {}  # by source id, while polling
        self._lock = threading.Lock()

    # --- lifecycle

    def start(self) -> None:
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("pull: already running")
        self._stopping = threading.Event()
        self._errors.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"pull-{s.label}", daemon=True)
            for s in self.sources
        ]
        for t in self._threads:
            t.start()
        log.info("pull_started", sources=[s.label for s in self.sources])

    def stop(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._lock:
            active = list(self._active.values())
        for transport in active:
            transport.close()  # ends a download or handshake in progress at once
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def check(self) -> None:
        if self._stopping.is_set():
            return
        for t in self._threads:
            if not t.is_alive():
                raise RuntimeError(f"pull: thread {t.name} died: {self._errors!r}")

    def backoff(self, poll_seconds: float, failures: int) -> float:
        """Seconds to wait after ``failures`` failed polls in a row."""
        if failures <= 0:
            return poll_seconds
        cap = max(self._max_backoff, poll_seconds)
        return min(cap, poll_seconds * 2 ** min(failures, 30))

    def _run(self, source: SourceInfo) -> None:
        pull = source.settings.pull
        assert pull is not None
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self.poll_once(source)
                except Exception as exc:  # the thread must outlive any bad poll
                    if self._stopping.is_set():
                        break
                    failures += 1
                    delay = self.backoff(pull.poll_seconds, failures)
                    expected = isinstance(exc, TransportError)
                    reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
                    log.warning("pull_failed", source=source.label, host=pull.host, port=pull.port,
                                reason=reason, failures=failures, retry_in=delay,
                                exc_info=not expected)  # a bug: keep its traceback
                else:
                    if failures:
                        log.info("pull_recovered", source=source.label, after_failures=failures)
                    failures = 0
                    delay = pull.poll_seconds
                self._stopping.wait(delay)
        except BaseException as exc:  # check() reports it
            self._errors[source.id] = exc
            log.exception("pull_thread_died", source=source.label)
            raise

    # --- one poll

    def poll_once(self, source: SourceInfo) -> PollReport:
        """Connect, list, take the stable files, retry pending removals.

        Raises TransportError when the endpoint cannot be used this time.
        """
        pull = source.settings.pull
        if pull is None:
            raise ValueError(f"{source.label} has no pull settings")
        state = self._states.setdefault(source.id, _State())
        report = PollReport(source.id)

        def register(transport: paramiko.Transport) -> None:
            with self._lock:
                self._active[source.id] = transport
            if self._stopping.is_set():
                transport.close()

        sftp: paramiko.SFTPClient | None = None
        try:
            try:
                sftp = open_sftp(endpoint(pull), register)
            except HostKeyRejected as exc:
                log.error("pull_host_key_rejected", source=source.label, host=pull.host, port=pull.port,
                          expected=exc.expected, offered=exc.offered, key_type=exc.key_type)
                raise
            self._poll(source, sftp, state, report)
        finally:
            with self._lock:
                transport = self._active.pop(source.id, None)
            if sftp is not None:
                sftp.close()
            if transport is not None:
                transport.close()
        return report

    def _poll(self, source: SourceInfo, sftp: paramiko.SFTPClient, state: _State,
              report: PollReport) -> None:
        pull = source.settings.pull
        assert pull is not None
        listing = _listing(sftp, pull.remote_folder)
        report.listed = len(listing)
        previous, state.previous = state.previous, dict(listing)
        self._retry_removals(source, sftp, listing, report)
        for name, (size, mtime) in sorted(listing.items()):
            if self._stopping.is_set():
                break
            ident = Identity(posixpath.join(pull.remote_folder, name), size, mtime)
            if ident in state.fetched or self._recorded(source.id, ident):
                report.known.append(ident.remote_path)
                continue
            if previous is None or previous.get(name) != (size, mtime):
                report.unstable.append(ident.remote_path)
                continue
            self._take(source, sftp, name, ident, report)

    def _recorded(self, source_id: int, ident: Identity) -> bool:
        with self._sessions() as s:
            return pulled.already_fetched(s, source_id, ident.remote_path, ident.size, ident.mtime)

    def _take(self, source: SourceInfo, sftp: paramiko.SFTPClient, name: str,
              ident: Identity, report: PollReport) -> None:
        pull = source.settings.pull
        assert pull is not None
        state = self._states[source.id]
        received_at = self._clock()
        started = time.monotonic()
        if not self._plain(source, sftp, ident, state, report):
            return
        got = self._download(source, sftp, name, ident)
        if got is None:
            if state.previous is not None:
                state.previous.pop(name, None)  # it must be seen stable again first
            return
        staged, sha256 = got
        arrival = Arrival(path=staged, source_id=source.id, original_name=name, protocol="pull",
                          received_at=received_at, user=pull.user,
                          remote_addr=f"{pull.host}:{pull.port}",
                          elapsed_s=time.monotonic() - started)
        try:
            upload_id = self._deliver(arrival)
        except Exception as exc:
            _discard(staged)  # not claimed: the remote file stays and is taken next time
            raise TransportError(f"intake did not take {ident.remote_path}: {exc}") from exc
        # From here the file is ours: remember it before anything else can fail.
        state.fetched.add(ident)
        try:
            with self._sessions() as s, s.begin():
                pulled.record_fetch(s, source_id=source.id, remote_path=ident.remote_path,
                                    size=ident.size, mtime=ident.mtime, sha256=sha256,
                                    upload_id=upload_id, fetched_at=self._clock())
        except Exception:
            # intake's sha256 duplicate check still guards a re-fetch after a restart
            log.exception("pull_record_failed", source=source.label, remote_path=ident.remote_path,
                          upload_id=upload_id)
        log.info("pull_fetched", source=source.label, remote_path=ident.remote_path,
                 size=ident.size, sha256=sha256, upload_id=upload_id)
        report.fetched.append(ident.remote_path)
        report.upload_ids.append(upload_id)
        self._remove(source, sftp, name, ident, report)

    def _plain(self, source: SourceInfo, sftp: paramiko.SFTPClient, ident: Identity, state: _State,
               report: PollReport) -> bool:
        """Whether the remote name is a regular file itself, by ``lstat``, before it is opened.

        The listing already leaves out what it shows as a link, but a server
        may list a symlink with its target's attributes (a ``stat`` in its
        readdir); SFTP has no ``O_NOFOLLOW``, so this is the check that keeps
        a warehouse's link to some other file from being fetched.
        """
        try:
            attr = sftp.lstat(ident.remote_path)
        except OSError:
            return False  # vanished: the next listing tells
        if attr.st_mode is not None and stat.S_ISREG(attr.st_mode):
            return True
        what = "a symbolic link" if attr.st_mode is not None and stat.S_ISLNK(attr.st_mode) else "not a regular file"
        report.refused.append(ident.remote_path)
        if ident.remote_path not in state.refused:
            state.refused.add(ident.remote_path)
            log.warning("pull_refused", source=source.label, remote_path=ident.remote_path, what=what,
                        note="not fetched: only regular files are taken")
        return False

    def _download(self, source: SourceInfo, sftp: paramiko.SFTPClient, name: str,
                  ident: Identity) -> tuple[Path, str] | None:
        """The file in staging under a temporary name, with its sha256; None when
        this file cannot be taken now (vanished, unreadable, wrong size)."""
        source.staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=source.staging, prefix=".pull-", suffix=".part")
        staged = Path(tmp)
        digest = hashlib.sha256()
        count = 0
        try:
            with os.fdopen(fd, "wb") as out, sftp.open(ident.remote_path, "rb") as remote:
                remote.prefetch(ident.size)
                while chunk := remote.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    count += len(chunk)
                out.flush()
                os.fsync(out.fileno())  # intake renames it; the bytes must be on disk first
        except OSError as exc:
            _discard(staged)
            transport = sftp.get_channel().get_transport()
            if transport is None or not transport.is_active():
                raise TransportError(f"connection lost while fetching {ident.remote_path}") from exc
            log.warning("pull_download_failed", source=source.label,
                        remote_path=ident.remote_path, error=str(exc))
            return None
        except BaseException:
            _discard(staged)
            raise
        if count != ident.size:
            _discard(staged)
            log.warning("pull_size_mismatch", source=source.label, remote_path=ident.remote_path,
                        listed=ident.size, received=count)
            return None
        return staged, digest.hexdigest()

    # --- after a fetch: remove on the remote side

    def _retry_removals(self, source: SourceInfo, sftp: paramiko.SFTPClient,
                        listing: dict[str, tuple[int, int]], report: PollReport) -> None:
        pull = source.settings.pull
        assert pull is not None
        with self._sessions() as s:
            pending = pulled.pending_removals(s, source.id)
        for ident in sorted(pending, key=lambda i: i.remote_path):
            folder, name = posixpath.split(ident.remote_path)
            if posixpath.normpath(folder) != posixpath.normpath(pull.remote_folder):
                continue  # fetched from another folder (the config changed): not ours to judge
            if listing.get(name) == (ident.size, ident.mtime):
                self._remove(source, sftp, name, ident, report)
            else:  # gone, or replaced by new contents: the version we fetched is no longer there
                self._mark_removed(source, ident)

    def _remove(self, source: SourceInfo, sftp: paramiko.SFTPClient, name: str,
                ident: Identity, report: PollReport) -> None:
        pull = source.settings.pull
        assert pull is not None
        state = self._states[source.id]
        try:
            if pull.after == "move":
                dest = self._move(sftp, pull, name, ident.remote_path)
            else:
                sftp.remove(ident.remote_path)
                dest = None
        except (OSError, paramiko.SSHException) as exc:
            report.remove_failed.append(ident.remote_path)
            # retried on every poll: say it loudly once, then quietly
            level = log.debug if ident in state.warned else log.warning
            state.warned.add(ident)
            level("pull_remove_failed", source=source.label, remote_path=ident.remote_path,
                  after=pull.after, error=str(exc) or type(exc).__name__)
            return
        state.warned.discard(ident)
        report.removed.append(ident.remote_path)
        log.info("pull_remote_removed", source=source.label, remote_path=ident.remote_path,
                 after=pull.after, moved_to=dest)
        self._mark_removed(source, ident)

    def _mark_removed(self, source: SourceInfo, ident: Identity) -> None:
        try:
            with self._sessions() as s, s.begin():
                pulled.mark_removed(s, source.id, ident.remote_path, ident.size, ident.mtime)
        except Exception:
            log.exception("pull_record_failed", source=source.label, remote_path=ident.remote_path)

    def _move(self, sftp: paramiko.SFTPClient, pull: PullSettings, name: str, path: str) -> str:
        folder = posixpath.join(pull.remote_folder, pull.processed_folder)
        try:
            sftp.stat(folder)
        except FileNotFoundError:
            try:
                sftp.mkdir(folder)
            except OSError:
                sftp.stat(folder)  # another client made it meanwhile; else this raises
        dest = posixpath.join(folder, name)
        if self._exists(sftp, dest):
            # never overwrite an earlier file of that name: add when it was moved
            stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
            stamp = self._clock().strftime("%Y%m%dT%H%M%SZ")
            for n in range(100):
                extra = f"{stamp}" if n == 0 else f"{stamp}-{n}"
                dest = posixpath.join(folder, f"{stem}.{extra}{dot}{ext}")
                if not self._exists(sftp, dest):
                    break
        sftp.rename(path, dest)  # SFTP rename refuses an existing target
        return dest

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            sftp.stat(path)
        except FileNotFoundError:
            return False
        return True
