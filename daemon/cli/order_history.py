"""History rows for order and cancellation files imported from the command line.

`orders import` applies directly (its output lists every line), but every
file, whatever its way in, belongs in the upload history: the row is written
in the same transaction as the apply, and the original is kept in the
archive (or quarantine) like a dropped file's.
"""

from __future__ import annotations

import getpass
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from daemon.db import uploads
from daemon.ingest.intake import sha256_of
from daemon.ingest.spool import SpoolDirs
from daemon.formats.orders import RowError


def record(session: Session, *, market_id: int, kind: str, file: Path, now: datetime,
           status: str, message: str | None, counts: dict[str, int],
           row_errors: Sequence[RowError] = ()) -> tuple[int, str]:
    """Write a finished upload row; returns (upload id, its file name in the archive)."""
    sha, size = sha256_of(file)
    upload = uploads.record_received(
        session, source_id=None, market_id=market_id, kind=kind, original_name=file.name,
        size=size, sha256=sha, protocol="cli", user=getpass.getuser(), remote_addr=None,
        received_at=now, elapsed_s=None)
    upload.status, upload.message = status, message
    upload.started_at = upload.finished_at = now
    for key, value in counts.items():
        setattr(upload, key, value)
    uploads.add_errors(session, upload.id, [(e.row, e.column, e.value, None, e.message) for e in row_errors])
    assert upload.spool_name is not None
    return upload.id, upload.spool_name


def keep_copy(data_dir: Path, name: str, file: Path, *, rejected: bool, now: datetime) -> Path:
    """Keep the original's bytes beside the dropped files' (the user keeps theirs)."""
    dirs = SpoolDirs(data_dir)
    target = (dirs.quarantine if rejected else dirs.archive(now)) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    return target
