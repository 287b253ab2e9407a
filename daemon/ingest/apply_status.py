"""Apply one warehouse status file: the same lifecycle as every other file.

The file was read in the parser worker (``contained``), before this
transaction; here its rows are checked against what the warehouse was sent
and applied (``db.fulfilments``) in one transaction with the row errors and
the upload's outcome, after re-checking the upload's status so it never
applies twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.db.fulfilments import StatusLine, apply_status_rows
from daemon.db.models import Source
from daemon.errors import FeedError
from daemon.formats.feeds import RowError
from daemon.formats.statuses import ParsedStatuses
from daemon.ingest.outcomes import Outcome, Verify, finish, finish_alone, outcome_of
from daemon.inventory.uploads import UploadStatus, outcome


@dataclass
class StatusFileResult:
    """What one status file did. ``errors`` counts ``row_errors``."""

    source: str
    rows: int = 0
    applied: int = 0
    unchanged: int = 0  # rows already applied (the same status again), repeats in the file too
    shipped: int = 0
    cancelled: int = 0
    restocked: int = 0
    errors: int = 0
    row_errors: list[RowError] = field(default_factory=list)
    lines: list[StatusLine] = field(default_factory=list)


class StatusReader(Protocol):
    """What reads a status file: the parser pool (``contained.ParserPool``)."""

    def read_statuses(self, path: Path) -> ParsedStatuses: ...


class StatusFileApplier:
    def __init__(self, sessions: sessionmaker[Session], reader: StatusReader,
                 clock: Callable[[], datetime], *, node: str | None = None) -> None:
        self._sessions, self._reader, self._clock, self._node = sessions, reader, clock, node

    def apply(self, upload_id: int, path: Path, verify: Verify | None = None) -> Outcome:
        with self._sessions() as session:
            upload = uploads.get(session, upload_id)
            original, protocol = upload.original_name, upload.protocol
        try:
            parsed = self._reader.read_statuses(path)
        except FeedError as exc:
            return finish_alone(self._sessions, upload_id, UploadStatus.REJECTED, f"{original}: {exc}",
                                self._clock())
        now = self._clock()
        with self._sessions() as session, session.begin():
            upload = uploads.get(session, upload_id, fresh=True)
            if uploads.is_final(upload):
                return outcome_of(upload)  # another process finished it meanwhile
            if verify is not None and (why := verify()) is not None:
                return finish(session, upload, UploadStatus.REJECTED, f"{upload.original_name}: {why}", now=now)
            assert upload.source_id is not None
            source = session.get(Source, upload.source_id)
            assert source is not None
            uploads.record_apply(session, upload, once=False, node=self._node, now=now)
            done = apply_status_rows(session, source, parsed.rows, upload_id=upload_id,
                                     received_at=upload.received_at, now=now, actor=f"upload:{protocol}")
            errors = sorted([*parsed.errors, *(RowError(row, parsed.labels[role], value, why)
                                               for row, role, value, why in done.refusals)],
                            key=lambda e: e.row or 0)
            result = StatusFileResult(
                source=source.name, rows=parsed.total_rows, applied=done.applied,
                unchanged=done.unchanged + parsed.duplicates, shipped=done.shipped, cancelled=done.cancelled,
                restocked=done.restocked, errors=len(errors), row_errors=errors, lines=done.lines)
            uploads.replace_errors(session, upload_id, [(e.row, e.column, e.value, None, e.message) for e in errors])
            counts = {"rows": result.rows, "applied": result.applied, "unchanged": result.unchanged,
                      "errors": len(errors), "zeroed": 0, "stale": 0}
            status, reason = outcome(rows=result.rows, errors=len(errors), taken=result.applied + result.unchanged,
                                     repeated=result.unchanged)
            note = (f"{result.applied} status row(s) applied: {result.shipped} line(s) shipped, "
                    f"{result.cancelled} cancelled ({result.restocked} restocked); {result.unchanged} already known")
            return finish(session, upload, status, reason or note, now=now, counts=counts, detail=result)
