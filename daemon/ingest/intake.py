"""Intake: record a complete file in the history, then claim it into the spool.

Order matters for "never lose, never apply twice":

1. the history row is committed first (status ``received``, with the name the
   file will have in the spool);
2. the file is renamed into the spool (a watched file is copied instead,
   and its original moved aside: ``ingest.claim`` says why);
3. the upload id is queued for a worker.

A crash after 1 leaves a row whose spool file does not exist while the file
is still in the inbox: ``recover`` drops such a row and the watcher takes the
file again. A crash after 2 leaves a spool file whose upload is not finished:
``recover`` queues it again. Nothing in between can apply anything. A copy
cut short by a crash is a ``.copying`` file that ``recover`` removes; a crash
between a copy and its original leaving the inbox takes that file twice, and
the second is a duplicate.

Each row names the node (daemon) that holds the file in its spool; several
daemons may share one database, and each recovers only its own rows.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.db.engine import durable
from daemon.db.models import Upload
from daemon.ingest import claim
from daemon.ingest.arrival import Arrival
from daemon.ingest.spool import SpoolDirs, fsync_dir, move

log = structlog.get_logger(__name__)


class Intake:
    def __init__(
        self, sessions: sessionmaker[Session], dirs: SpoolDirs,
        enqueue: Callable[[Hashable, int], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC), *, node: str,
    ) -> None:
        self._sessions = sessions
        self._dirs = dirs
        self._enqueue = enqueue
        self._clock = clock
        self._node = node

    def deliver(self, arrival: Arrival) -> int:
        """Claim a complete file. Returns its upload id; raises if it vanished.

        When this returns, the sender may be told the file was received (the
        226, the SFTP close reply): the file's bytes, its history row and its
        name in the spool all survive an OS crash by then.

        A file from a watched inbox (``arrival.shared``) that is not one plain
        regular file gets a history row and is refused without being opened
        (``ingest.claim``); one that changed while it was claimed raises
        ``FileChanged`` and nothing of it is taken.
        """
        if arrival.shared and (what := claim.refusal(arrival.path)) is not None:
            return self._refuse(arrival, what)
        try:
            fd = claim.open_plain(arrival.path)
        except claim.NotPlain as exc:
            if not arrival.shared:
                raise
            return self._refuse(arrival, str(exc))
        try:
            seen = claim.Seen.of(os.fstat(fd))
            if arrival.settled is not None and arrival.settled != (seen.size, seen.mtime_ns):
                raise claim.FileChanged(f"{arrival.original_name} changed after it settled")
            sha, size = claim.hash_fd(fd)
            if not arrival.shared:
                os.fsync(fd)
            if claim.Seen.of(os.fstat(fd)) != seen or size != seen.size:
                raise claim.FileChanged(f"{arrival.original_name} changed while it was hashed")
            upload_id, name = self._record(arrival, sha, size)
            try:
                if arrival.shared:
                    self._claim_copy(arrival.path, fd, seen, sha, self._dirs.spool / name)
                else:
                    move(arrival.path, self._dirs.spool / name)
            except (FileNotFoundError, claim.FileChanged):
                # Someone else claimed, removed or rewrote it between the hash
                # and the claim: nothing was taken, so the row must not stay either.
                with self._sessions() as session, session.begin():
                    uploads.forget(session, upload_id)
                raise
        finally:
            os.close(fd)
        log.info("upload_received", upload_id=upload_id, source_id=arrival.source_id,
                 market_id=arrival.market_id, kind=arrival.kind, file=arrival.original_name,
                 size=size, protocol=arrival.protocol, user=arrival.user,
                 remote_addr=arrival.remote_addr)
        self._enqueue(arrival.lane, upload_id)
        return upload_id

    def _record(self, arrival: Arrival, sha: str, size: int) -> tuple[int, str]:
        with self._sessions() as session, session.begin():
            durable(session)
            upload = uploads.record_received(
                session, source_id=arrival.source_id, original_name=arrival.original_name,
                size=size, sha256=sha, protocol=arrival.protocol, user=arrival.user,
                remote_addr=arrival.remote_addr, received_at=arrival.received_at,
                elapsed_s=arrival.elapsed_s, market_id=arrival.market_id, kind=arrival.kind,
                node=self._node,
            )
            upload_id, name = upload.id, upload.spool_name
        assert name is not None
        return upload_id, name

    def _claim_copy(self, path: Path, fd: int, seen: claim.Seen, sha: str, dst: Path) -> None:
        """Copy a shared file into the spool through ``fd``, then move its original aside.

        The copy is in place (synced, hashing to ``sha``) before the original
        leaves the inbox, so a crash in between leaves both, and the file is
        at worst taken twice (a duplicate), never lost. The original is then
        renamed beside the copy (or removed, when the inbox is on another
        filesystem) and checked once more: bytes a writer added up to that
        moment put the file back rather than being dropped.
        """
        tmp = dst.with_name(f".{dst.name}.copying")
        tmp.unlink(missing_ok=True)
        try:
            copied, _ = claim.copy_fd(fd, tmp, seen.mtime_ns)
            if copied != sha or claim.Seen.of(os.fstat(fd)) != seen:
                raise claim.FileChanged(f"{path.name} changed while it was copied")
            os.rename(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dst.parent)
        aside = claim.claimed_original(dst)
        try:
            try:
                os.rename(path, aside)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                if claim.Seen.of(os.lstat(path)) != seen:
                    raise claim.FileChanged(f"{path.name} changed while it was claimed") from exc
                os.unlink(path)
            else:
                if claim.Seen.of(os.lstat(aside)) != seen:
                    # Not the file we copied (replaced under its name), or grown since: put it back.
                    claim.put_back(aside, path)
                    raise claim.FileChanged(f"{path.name} changed while it was claimed")
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def _refuse(self, arrival: Arrival, what: str) -> int:
        """A history row for a name that is not a plain file; the entry goes to the spool unopened.

        ``rename`` moves the name itself (the link, the pipe), never what it
        points at; the processor records the refusal and removes the entry.
        No byte was read, so the row says 0 bytes and the sha256 of nothing.
        """
        upload_id, name = self._record(arrival, _NOTHING, 0)
        try:
            os.rename(arrival.path, self._dirs.spool / name)
        except FileNotFoundError:
            with self._sessions() as session, session.begin():
                uploads.forget(session, upload_id)
            raise
        fsync_dir(self._dirs.spool)
        log.warning("upload_refused", upload_id=upload_id, file=arrival.original_name, what=what,
                    source_id=arrival.source_id, market_id=arrival.market_id)
        self._enqueue(arrival.lane, upload_id)
        return upload_id

    def recover(self) -> list[int]:
        """Finish what a previous run left: returns the upload ids queued again.

        Finished uploads whose file is still in the spool (a crash between the
        commit and the archive) are queued too: processing them only moves the
        file on, it never applies again.
        """
        claimed: list[int] = []
        with self._sessions() as session, session.begin():
            for upload in uploads.unfinished(session, self._node):
                assert upload.spool_name is not None
                if not os.path.lexists(self._dirs.spool / upload.spool_name):
                    log.warning("claim_incomplete", upload_id=upload.id, file=upload.original_name)
                    uploads.forget(session, upload.id)
                    continue
                claimed.append(upload.id)
            # Finished uploads whose file is still here: only the filing is left.
            in_spool = {_id_from_spool_name(p.name) for p in self._dirs.spool.iterdir()
                        if not p.name.startswith(".")}
            self._sweep_claims(session)
            lanes = uploads.lanes(session, {*claimed, *(i for i in in_spool if i is not None)}, self._node)
        for upload_id in sorted(lanes):
            self._enqueue(lanes[upload_id], upload_id)
        if lanes:
            log.info("spool_recovered", uploads=sorted(lanes))
        return sorted(lanes)


    def _sweep_claims(self, session: Session) -> None:
        """Remove what a claim by copy left behind once its spool file is gone.

        A ``.copying`` file whose spool file never appeared is a copy cut
        short; a ``.claimed`` original whose spool file was filed away is no
        longer needed. Only this node's (or a forgotten row's) are touched:
        another daemon sharing the data folder may be claiming right now.
        """
        for path in self._dirs.spool.iterdir():
            name = path.name
            for suffix in (".copying", ".claimed"):
                if not (name.startswith(".") and name.endswith(suffix)):
                    continue
                spool_name = name[1:-len(suffix)]
                upload_id = _id_from_spool_name(spool_name)
                if upload_id is None or os.path.lexists(self._dirs.spool / spool_name):
                    continue
                upload = session.get(Upload, upload_id)
                if upload is None or upload.node == self._node:
                    path.unlink(missing_ok=True)
                    log.info("claim_leftover_removed", file=name)


_NOTHING = hashlib.sha256(b"").hexdigest()


def _id_from_spool_name(name: str) -> int | None:
    head, sep, _ = name.partition("__")
    return int(head) if sep and head.isdigit() else None
