"""Held full feeds: a person approves (apply it after all) or rejects them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.formats.results import write_result
from daemon.ingest.outcomes import Outcome, outcome_of
from daemon.ingest.process import Processor
from daemon.ingest.sources import SourceBook
from daemon.ingest.spool import SpoolDirs, move


def approve(sessions: sessionmaker[Session], dirs: SpoolDirs, processor: Processor,
            upload_id: int, actor: str) -> Outcome:
    with sessions() as session, session.begin():
        upload = uploads.held(session, upload_id)
        name = upload.spool_name
        assert name is not None
        # Back to the spool first, then the status: a crash in between leaves
        # a held upload whose file is in the spool, which recovery re-holds.
        move(dirs.held / name, dirs.spool / name)
        uploads.release_held(session, upload_id, actor)
    return processor.process(upload_id, approved=True)


def reject(sessions: sessionmaker[Session], dirs: SpoolDirs, book: SourceBook,
           upload_id: int, actor: str) -> Outcome:
    with sessions() as session, session.begin():
        name = uploads.held(session, upload_id).spool_name
        assert name is not None
        upload = uploads.reject_held(session, upload_id, actor, now=datetime.now(UTC),
                                     kept_at=str((dirs.quarantine / name).relative_to(dirs.root)))
        source_id = upload.source_id
        outcome = outcome_of(upload)
    if (dirs.held / name).exists():
        move(dirs.held / name, dirs.quarantine / name)
    info = book.get(source_id) if source_id is not None else None
    if info is not None:
        with sessions() as session:
            history, errors = uploads.show(session, upload_id)
        write_result(info.results, name, history.status, history.message, errors, None)
    return outcome
