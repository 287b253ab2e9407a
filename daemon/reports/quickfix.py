"""The quick-fix file of an upload: only its failed rows, ready to correct and send again.

Like Amazon's processing reports: the rows that had a row error, cut from the
original file the warehouse sent (kept in the archive or quarantine) and
written back in the same format (``formats.fix_file``). Corrected and
uploaded again through any way in, it is an ordinary feed whose rows were
never applied, so it is not a duplicate of the original.

Two cases hold more than the failed rows or none:

- a file rejected whole for its row errors (``on_row_error = "reject_file"``)
  applied none of its rows, so every row is in it: sending only the bad ones
  back would leave the good ones never applied;
- a full feed (``scope = "full"``) has none: a file of a few rows sent to
  that source would zero every SKU it leaves out (or be held). Its SKUs on
  failed rows were left as they were; the warehouse's next full feed is the fix.

The digest attaches it through ``quick_fix_file(session, upload_id)``: the
settings (where the originals are kept, how the source's files are read) come
with the session (``settings.session_info``). Only the daemon that kept an
original can read it: with several daemons on one database, each with its own
``data_dir``, another daemon's upload has no quick-fix file here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Merchant, Source, Upload, UploadError
from daemon.errors import FeedError, NotFound, UserError
from daemon.inventory.uploads import UploadStatus
from daemon.settings import Settings, SourceSettings, settings_of

_STALE = "skipped:"  # a row skipped by the stale guard: taken, not failed (see formats.results)
_EARLIER_FIX = re.compile(r"\.fix-\d+$")


class NoQuickFix(UserError):
    """Why an upload has no quick-fix file: nothing failed, the original is gone, ..."""


@dataclass(frozen=True)
class QuickFix:
    name: str  # <original stem>.fix-<upload id>.<ext>
    data: bytes
    rows: int


def quick_fix_file(session: Session, upload_id: int, *,
                   settings: Settings | None = None) -> tuple[str, bytes] | None:
    """(file name, bytes) of the upload's quick-fix file; None when nothing failed,
    the original is gone, or the upload has none (see the module's docstring)."""
    try:
        fix = build(session, upload_id, settings)
    except NoQuickFix:
        return None
    return fix.name, fix.data


def build(session: Session, upload_id: int, settings: Settings | None = None) -> QuickFix:
    """The quick-fix file, or ``NoQuickFix`` saying why there is none."""
    settings = settings or settings_of(session.info)
    if settings is None:
        raise RuntimeError("the quick-fix file needs the settings: make the session with "
                           "session_factory(engine, info=session_info(settings))")
    found = session.execute(select(Upload, Source.name, Merchant.name)
                            .outerjoin(Source, Upload.source_id == Source.id)
                            .outerjoin(Merchant, Merchant.id == Source.merchant_id)
                            .where(Upload.id == upload_id)).first()
    if found is None:
        raise NotFound(f"no upload with id {upload_id}")
    upload, source_name, merchant_name = found
    if upload.kind != "feed" or source_name is None:
        raise NoQuickFix(f"upload {upload_id} is a {upload.kind} file; quick-fix files are made "
                         "for quantity feeds")
    feed = _source_settings(settings, merchant_name, source_name, upload_id).feed
    if feed.scope == "full":
        raise NoQuickFix(f"upload {upload_id} is a full feed of {merchant_name}/{source_name}: a file of "
                         "only its failed rows would zero every SKU it leaves out; the SKUs of its failed "
                         "rows were left as they were, so correct them in the next full feed")
    failed = _failed_rows(session, upload_id)
    if not failed:
        raise NoQuickFix(f"upload {upload_id} ({upload.original_name}) has no failed rows")
    # Valid rows refused with the file (on_row_error = reject_file) were never
    # applied either: they go back with the bad ones.
    whole = upload.status == UploadStatus.REJECTED and upload.applied + upload.unchanged + upload.stale > 0
    raw = _original(settings, upload)
    from daemon.formats.feeds import ParseOptions
    from daemon.formats.fix_file import chosen_rows

    options = ParseOptions(columns=dict(feed.columns.items()), sheet=feed.sheet,
                           max_uncompressed_bytes=settings.ingest.max_uncompressed_bytes)
    try:
        fix = chosen_rows(raw, upload.original_name, options, None if whole else failed)
    except FeedError as exc:
        raise NoQuickFix(f"the original of upload {upload_id} cannot be read again: {exc}") from None
    return QuickFix(fix_name(upload.original_name, upload_id, fix.extension), fix.data, fix.rows)


def fix_name(original_name: str, upload_id: int, extension: str) -> str:
    """``stock.csv`` -> ``stock.fix-12.csv``; the fix of a fix is named for the first file."""
    base = PureWindowsPath(PurePosixPath(original_name).name).name  # no folders, either kind
    stem = base[: -len(suffix)] if (suffix := PurePosixPath(base).suffix) else base
    return f"{_EARLIER_FIX.sub('', stem) or 'feed'}.fix-{upload_id}{extension}"


def _source_settings(settings: Settings, merchant: str | None, source: str,
                     upload_id: int) -> SourceSettings:
    try:
        configured = settings.merchant(merchant).all_sources()
    except NotFound:
        configured = []
    for candidate in configured:
        if candidate.name == source:
            return candidate
    raise NoQuickFix(f"upload {upload_id} is for {merchant}/{source}, which is no longer configured")


def _failed_rows(session: Session, upload_id: int) -> Sequence[int]:
    rows = session.scalars(select(UploadError.row).distinct().where(
        UploadError.upload_id == upload_id, UploadError.row.is_not(None),
        UploadError.message.not_like(f"{_STALE}%")))
    return sorted(r for r in rows if r is not None)


def _original(settings: Settings, upload: Upload) -> bytes:
    """The bytes the sender sent, from the archive or quarantine, checked against the history."""
    path = settings.data_dir / upload.kept_at if upload.kept_at else None
    if path is None or not path.is_file():
        raise NoQuickFix(f"the original of upload {upload.id} ({upload.original_name}) is no longer kept "
                         "here (past archive_retention_days, or kept by another daemon's data_dir)")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != upload.sha256:
        raise NoQuickFix(f"the file kept for upload {upload.id} at {path} is not the one received "
                         "(its sha256 differs)")
    return raw
