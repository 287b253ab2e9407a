"""Process one claimed upload: first look, read, apply in one transaction, then file it.

Every kind of file takes the same steps: the upload becomes ``processing``;
a duplicate, empty or oversized file is settled at once; the file is read in
the parser worker and applied in one transaction that also records its
outcome (``apply_feed``, ``apply_market``); only after the commit is the
original moved to the archive, quarantine or held/, and the result file
written for the sender.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import stock, uploads
from daemon.formats.results import write_result
from daemon.ingest import claim
from daemon.ingest.apply_feed import FeedApplier, FeedReader, ResultFrames
from daemon.ingest.apply_market import MarketFileApplier, MarketReaders
from daemon.ingest.apply_status import StatusFileApplier, StatusReader
from daemon.ingest.outcomes import Outcome, OutcomeHook, finish, outcome_of
from daemon.ingest.sources import SourceBook
from daemon.ingest.spool import SpoolDirs, move
from daemon.inventory.uploads import UploadStatus
from daemon.settings import IngestSettings

log = structlog.get_logger("daemon.ingest")


class FileReaders(MarketReaders, StatusReader, Protocol):
    """What reads every file but a feed: the parser pool (``contained.ParserPool``)."""


class Processor:
    def __init__(self, sessions: sessionmaker[Session], dirs: SpoolDirs, book: SourceBook,
                 ingest: IngestSettings, read_feed: FeedReader, markets: FileReaders,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), *, node: str | None = None,
                 on_outcome: OutcomeHook | None = None) -> None:
        self._sessions = sessions
        self._on_outcome = on_outcome
        self._dirs = dirs
        self._book = book
        self._ingest = ingest
        self._clock = clock
        self.feeds = FeedApplier(sessions, book, ingest, read_feed, clock, node=node)
        self.market_files = MarketFileApplier(sessions, markets, clock, node=node)
        self.status_files = StatusFileApplier(sessions, markets, clock, node=node)

    def process(self, upload_id: int, *, approved: bool = False) -> Outcome:
        """Take an upload to its final status and file it; safe to call again for a final one.

        ``approved``: a person released this held feed, so it is neither a
        duplicate nor held again.
        """
        with self._sessions() as session, session.begin():
            upload = uploads.start(session, upload_id, self._clock())
            source_id, market_id, kind, name, sha = (upload.source_id, upload.market_id, upload.kind,
                                                     upload.spool_name, upload.sha256)
            done = outcome_of(upload) if uploads.is_final(upload) else None
        assert name is not None
        path = self._dirs.spool / name
        if done is None:
            done = self._first_look(upload_id, not approved, path)
        verify = None
        if done is None and os.path.lexists(path):
            # What the parse is about to read; checked again before the commit.
            before = claim.Seen.of(os.lstat(path))
            verify = lambda: claim.changed(path, before, sha)
        frames: ResultFrames | None = None
        if kind in ("feed", "statuses"):
            info = self._book.get(source_id) if source_id is not None else None
            if info is None:
                raise LookupError(f"upload {upload_id}: source {source_id} is not configured")
            results = info.results_for(kind)
            if done is None and kind == "feed":
                done, frames = self.feeds.apply(upload_id, info, path, approved, verify)
            elif done is None:
                done = self.status_files.apply(upload_id, path, verify)
        else:
            market = self._book.market(market_id) if market_id is not None else None
            if market is None:
                raise LookupError(f"upload {upload_id}: market {market_id} is not configured")
            results = market.results(kind)
            if done is None:
                done = self.market_files.apply(upload_id, kind, path, verify)
        # Before the file leaves the spool: a crash before the hook ran leaves
        # the file there, so recovery finishes it again and tells the hook then.
        self._tell(done)
        self._file_away(upload_id, results, name, done, frames)
        return done

    def _release_original(self, upload_id: int, src: Path) -> None:
        """The original kept beside a copied claim: dropped, or, when its writer
        added to it after the claim, put back in its inbox to be taken again whole."""
        aside = claim.claimed_original(src)
        if not os.path.lexists(aside):
            return
        if not claim.grown(src):
            aside.unlink()
            return
        with self._sessions() as session:
            upload = uploads.get(session, upload_id)
            key, original = (upload.source_id, upload.market_id, upload.kind), upload.original_name
        inbox = next((i.path for i in self._book.inboxes() if (i.source_id, i.market_id, i.kind) == key), None)
        if inbox is None:  # the inbox is no longer configured: keep the grown file for a person
            move(aside, self._dirs.quarantine / f"{src.name}.grown")
            return
        back = claim.put_back(aside, inbox / original)
        log.warning("claim_put_back", upload_id=upload_id, file=str(back),
                    note="the writer added to the file after it was claimed; it is taken again")

    def _tell(self, done: Outcome) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(done)
        except Exception:  # an alert that cannot be written must not stop the file being filed
            log.exception("outcome_hook_failed", upload_id=done.upload_id, status=str(done.status))

    def _first_look(self, upload_id: int, check_duplicate: bool, path: Path) -> Outcome | None:
        """What every file gets before its content is read: a feed that repeats
        an earlier one is recorded as a duplicate (under its source's lock, so
        another daemon applying the same content is waited for), an empty or
        oversized file rejected. Order and cancellation files are never
        duplicates by content: their lines are applied once by themselves.
        Before all that, a name from a watched inbox that is not one plain
        file (``Intake._refuse`` put it here unopened) is refused."""
        now = self._clock()
        with self._sessions() as session, session.begin():
            upload = uploads.get(session, upload_id)
            what = claim.refusal(path)
            if what is not None:
                return finish(session, upload, UploadStatus.REJECTED,
                              claim.refusal_message(upload.original_name, what), now=now)
            info = self._book.get(upload.source_id) if upload.source_id is not None else None
            if check_duplicate and info is not None:
                stock.lock_source(session, info.id)
                upload = uploads.get(session, upload_id, fresh=True)
                if uploads.is_final(upload):
                    return outcome_of(upload)  # another worker finished it meanwhile
                dup = uploads.find_duplicate(session, upload, once=info.settings.feed.mode == "adjust")
                if dup is not None:
                    return finish(session, upload, UploadStatus.DUPLICATE, dup.reason, now=now,
                                  duplicate_of=dup.of.id)
            if upload.size == 0:
                return finish(session, upload, UploadStatus.REJECTED, "the file is empty (0 bytes)", now=now)
            if upload.size > self._ingest.max_file_bytes:
                return finish(session, upload, UploadStatus.REJECTED, f"the file is {upload.size} bytes, "
                              f"over max_file_bytes = {self._ingest.max_file_bytes}", now=now)
        return None

    def _file_away(self, upload_id: int, results: Path, name: str, done: Outcome,
                   frames: ResultFrames | None) -> None:
        """After the commit: keep the original where it belongs, write the result file."""
        src = self._dirs.spool / name
        dst = self._dirs.kept(done.status, self._clock()) / name
        self._release_original(upload_id, src)
        if claim.refusal(src) is not None:
            os.unlink(src)  # a link, pipe or device: nothing of it is kept, nothing opened
        elif src.exists():
            move(src, dst)
            with self._sessions() as session, session.begin():
                uploads.mark_kept(session, upload_id, str(dst.relative_to(self._dirs.root)))
        with self._sessions() as session:
            history, errors = uploads.show(session, upload_id)
        write_result(results, name, history.status, history.message, errors, frames)
