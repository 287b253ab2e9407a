"""What processing an upload ended with, as the caller and the log see it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.db.models import Upload
from daemon.inventory.uploads import UploadStatus

log = structlog.get_logger("daemon.ingest")

COUNTS = ("rows", "applied", "unchanged", "errors", "zeroed", "stale")


@dataclass(frozen=True)
class Outcome:
    """An upload's final status and counts. ``detail`` is what applying a
    market's file did line by line (``orders import`` prints it); None otherwise."""

    upload_id: int
    status: UploadStatus
    message: str | None
    counts: dict[str, int]
    detail: Any = None


# Told of every upload's final outcome once it is committed (and again if
# recovery finishes the same upload: a listener keys on the upload id). The
# runtime passes reports' alerts in; ingest knows nothing of them.
OutcomeHook = Callable[[Outcome], None]

# Asked inside the apply's transaction, before the commit: why the file read
# is no longer the file claimed, or None (``ingest.claim.changed``).
Verify = Callable[[], "str | None"]


def outcome_of(upload: Upload, detail: Any = None) -> Outcome:
    return Outcome(upload.id, UploadStatus(upload.status), upload.message,
                   {key: getattr(upload, key) for key in COUNTS}, detail)


def finish(session: Session, upload: Upload, status: UploadStatus, message: str | None, *,
           now: datetime, counts: Mapping[str, int] | None = None,
           duplicate_of: int | None = None, detail: Any = None) -> Outcome:
    """Record the final status in the caller's transaction, and log it."""
    uploads.finish(session, upload, status, message, now=now, counts=counts, duplicate_of=duplicate_of)
    log.info("upload_finished", upload_id=upload.id, status=str(status), file=upload.original_name,
             message=message, **(counts or {}))
    return outcome_of(upload, detail)


def finish_alone(sessions: sessionmaker[Session], upload_id: int, status: UploadStatus,
                 message: str, now: datetime) -> Outcome:
    """``finish`` in a transaction of its own, unless another process finished it first."""
    with sessions() as session, session.begin():
        upload = uploads.get(session, upload_id, fresh=True)
        if uploads.is_final(upload):
            return outcome_of(upload)
        return finish(session, upload, status, message, now=now)
