"""Held full feeds: a person approves (apply it after all) or rejects them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.db.models import Upload
from daemon.errors import UserError
from daemon.ingest.process import Outcome, Processor
from daemon.formats.results import write_result
from daemon.ingest.sources import SourceBook
from daemon.ingest.spool import SpoolDirs, move


def _held(session: Session, upload_id: int) -> Upload:
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise UserError(f"no upload with id {upload_id}")
    if upload.status != "held":
        raise UserError(f"upload {upload_id} is {upload.status}, not held")
    return upload


def approve(sessions: sessionmaker[Session], dirs: SpoolDirs, processor: Processor,
            upload_id: int, actor: str) -> Outcome:
    with sessions() as session, session.begin():
        upload = _held(session, upload_id)
        name = upload.spool_name
        assert name is not None
        # Back to the spool first, then the status: a crash in between leaves
        # a held upload whose file is in the spool, which recovery re-holds.
        move(dirs.held / name, dirs.spool / name)
        upload.status = "processing"
        upload.message = f"approved by {actor}"
    return processor.process(upload_id, approved=True)


def reject(sessions: sessionmaker[Session], dirs: SpoolDirs, book: SourceBook,
           upload_id: int, actor: str) -> Outcome:
    with sessions() as session, session.begin():
        upload = _held(session, upload_id)
        name = upload.spool_name
        assert name is not None
        upload.status = "rejected"
        upload.message = f"held feed rejected by {actor}: {upload.message or ''}".rstrip(": ")
        upload.finished_at = datetime.now(UTC)
        upload.kept_at = str((dirs.quarantine / name).relative_to(dirs.root))
        source_id = upload.source_id
        outcome = Outcome(upload.id, upload.status, upload.message, {})
    if (dirs.held / name).exists():
        move(dirs.held / name, dirs.quarantine / name)
    info = book.get(source_id) if source_id is not None else None
    if info is not None:
        with sessions() as session:
            history, errors = uploads.show(session, upload_id)
        write_result(info.results, name, history, errors, None)
    return outcome
