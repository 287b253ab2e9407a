"""What the remote SFTP pull has fetched: the memory that stops a second fetch.

A remote file is identified by (source, remote path, size, mtime): the same
name with new contents (new size or mtime) is a new file and is fetched again;
the same file left behind because the remote delete failed is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from daemon.db.models import PulledFile


@dataclass(frozen=True)
class Identity:
    """One version of one remote file."""

    remote_path: str
    size: int
    mtime: int


def already_fetched(
    session: Session, source_id: int, remote_path: str, size: int, mtime: int,
) -> bool:
    found = session.scalar(
        select(PulledFile.id).where(
            PulledFile.source_id == source_id, PulledFile.remote_path == remote_path,
            PulledFile.size == size, PulledFile.mtime == mtime,
        ).limit(1)
    )
    return found is not None


def record_fetch(
    session: Session, *, source_id: int, remote_path: str, size: int, mtime: int,
    sha256: str, upload_id: int | None, fetched_at: datetime,
) -> PulledFile:
    row = PulledFile(source_id=source_id, remote_path=remote_path, size=size, mtime=mtime,
                     sha256=sha256, upload_id=upload_id, fetched_at=fetched_at,
                     remote_removed=False)
    session.add(row)
    session.flush()  # the unique constraint speaks now, inside the caller's transaction
    return row


def mark_removed(session: Session, source_id: int, remote_path: str, size: int, mtime: int) -> int:
    """The fetched version is gone from the remote side; returns rows changed."""
    result = session.execute(
        update(PulledFile).where(
            PulledFile.source_id == source_id, PulledFile.remote_path == remote_path,
            PulledFile.size == size, PulledFile.mtime == mtime,
        ).values(remote_removed=True)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)  # an UPDATE's result has a cursor


def pending_removals(session: Session, source_id: int) -> set[Identity]:
    """Fetched files still believed to sit on the remote side: removal is retried."""
    rows = session.execute(
        select(PulledFile.remote_path, PulledFile.size, PulledFile.mtime).where(
            PulledFile.source_id == source_id, PulledFile.remote_removed.is_(False),
        )
    )
    return {Identity(path, size, mtime) for path, size, mtime in rows}


def fetches(session: Session, source_id: int) -> list[PulledFile]:
    """Every fetch of a source, oldest first (for tests and inspection)."""
    return list(session.scalars(
        select(PulledFile).where(PulledFile.source_id == source_id).order_by(PulledFile.id)
    ))
