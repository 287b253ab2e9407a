"""Intake: record a complete file in the history, then claim it into the spool.

Order matters for "never lose, never apply twice":

1. the history row is committed first (status ``received``, with the name the
   file will have in the spool);
2. the file is renamed into the spool;
3. the upload id is queued for a worker.

A crash after 1 leaves a row whose spool file does not exist while the file
is still in the inbox: ``recover`` drops such a row and the watcher takes the
file again. A crash after 2 leaves a spool file whose upload is not finished:
``recover`` queues it again. Nothing in between can apply anything.

Each row names the node (daemon) that holds the file in its spool; several
daemons may share one database, and each recovers only its own rows.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.db.engine import durable
from daemon.ingest.arrival import Arrival
from daemon.ingest.spool import SpoolDirs, move

log = structlog.get_logger(__name__)


def sha256_of(path: Path, *, sync: bool = False) -> tuple[str, int]:
    """The file's sha256 and size; with ``sync``, its bytes are on disk when this returns."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(fh.fileno())
    return digest.hexdigest(), size


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
        """
        sha, size = sha256_of(arrival.path, sync=True)
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
        try:
            move(arrival.path, self._dirs.spool / name)
        except FileNotFoundError:
            # Someone else claimed or removed it between the hash and the
            # rename: nothing was taken, so the row must not stay either.
            with self._sessions() as session, session.begin():
                uploads.forget(session, upload_id)
            raise
        log.info("upload_received", upload_id=upload_id, source_id=arrival.source_id,
                 market_id=arrival.market_id, kind=arrival.kind, file=arrival.original_name,
                 size=size, protocol=arrival.protocol, user=arrival.user,
                 remote_addr=arrival.remote_addr)
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
                if not (self._dirs.spool / upload.spool_name).exists():
                    log.warning("claim_incomplete", upload_id=upload.id, file=upload.original_name)
                    uploads.forget(session, upload.id)
                    continue
                claimed.append(upload.id)
            # Finished uploads whose file is still here: only the filing is left.
            in_spool = {_id_from_spool_name(p.name) for p in self._dirs.spool.iterdir()
                        if p.is_file() and not p.name.startswith(".")}
            lanes = uploads.lanes(session, {*claimed, *(i for i in in_spool if i is not None)}, self._node)
        for upload_id in sorted(lanes):
            self._enqueue(lanes[upload_id], upload_id)
        if lanes:
            log.info("spool_recovered", uploads=sorted(lanes))
        return sorted(lanes)


def _id_from_spool_name(name: str) -> int | None:
    head, sep, _ = name.partition("__")
    return int(head) if sep and head.isdigit() else None
