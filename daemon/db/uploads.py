"""The upload history. Every change of an upload's status is made here.

An upload moves ``received`` (``record_received``) -> ``processing``
(``start``) -> a final status (``finish``); a held feed goes back to
``processing`` when a person approves it (``release_held``) or ends
``rejected`` (``reject_held``). The statuses and the rule that picks the
final one are the domain's (``daemon.inventory.uploads``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from daemon.db.models import MarketRecord, Merchant, Source, Upload, UploadApply, UploadError
from daemon.errors import NotFound, UserError
from daemon.inventory.uploads import APPLIED, FINAL, UNFINISHED, UploadStatus

SelectT = TypeVar("SelectT", bound=Select)  # any select: its columns pass through
ErrorTuple = tuple[int | None, str | None, str | None, str | None, str]  # row, column, value, sku, message


def record_received(
    session: Session, *, source_id: int | None, original_name: str, size: int, sha256: str,
    protocol: str, user: str | None, remote_addr: str | None, received_at: datetime,
    elapsed_s: float | None, market_id: int | None = None, kind: str = "feed",
    node: str | None = None,
) -> Upload:
    upload = Upload(source_id=source_id, market_id=market_id, kind=kind,
                    original_name=original_name, size=size, sha256=sha256,
                    protocol=protocol, user=user, remote_addr=remote_addr,
                    status=UploadStatus.RECEIVED, received_at=received_at, elapsed_s=elapsed_s,
                    node=node)
    session.add(upload)
    session.flush()
    upload.spool_name = spool_name(upload.id, original_name)
    return upload


def spool_name(upload_id: int, original_name: str) -> str:
    """The id first, so names are unique and sort in receive order."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in original_name)[:150]
    return f"{upload_id:09d}__{safe or 'file'}"


def get(session: Session, upload_id: int, *, fresh: bool = False) -> Upload:
    """The upload, read again from the database with ``fresh`` (another process may have moved it)."""
    upload = session.get(Upload, upload_id, populate_existing=fresh)
    if upload is None:
        raise LookupError(f"upload {upload_id} does not exist")
    return upload


def is_final(upload: Upload) -> bool:
    return upload.status in FINAL


def start(session: Session, upload_id: int, now: datetime) -> Upload:
    """A worker takes the upload: ``processing``, unless it is final already (then as it is)."""
    upload = get(session, upload_id)
    if not is_final(upload):
        upload.status, upload.started_at = UploadStatus.PROCESSING, now
    return upload


def finish(session: Session, upload: Upload, status: UploadStatus, message: str | None, *,
           now: datetime, counts: Mapping[str, int] | None = None,
           duplicate_of: int | None = None) -> Upload:
    """Record the upload's final status with its counts, in the caller's transaction."""
    if status not in FINAL:
        raise ValueError(f"{status} is not a final status")
    upload.status, upload.message, upload.finished_at = status, message, now
    upload.duplicate_of = duplicate_of
    if upload.started_at is None:
        upload.started_at = now
    for key, value in (counts or {}).items():
        setattr(upload, key, value)
    return upload


def set_warnings(upload: Upload, warnings: Iterable[str]) -> None:
    upload.warnings = "\n".join(warnings) or None


def mark_kept(session: Session, upload_id: int, kept_at: str) -> None:
    """Where the original bytes are kept after the commit (archive, quarantine or held)."""
    upload = session.get(Upload, upload_id)
    if upload is not None:
        upload.kept_at = kept_at


def held(session: Session, upload_id: int) -> Upload:
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound(f"no upload with id {upload_id}")
    if upload.status != UploadStatus.HELD:
        raise UserError(f"upload {upload_id} is {upload.status}, not held")
    return upload


def release_held(session: Session, upload_id: int, actor: str) -> Upload:
    """A person approved a held feed: it goes back to ``processing`` to be applied."""
    upload = held(session, upload_id)
    upload.status = UploadStatus.PROCESSING
    upload.message = f"approved by {actor}"
    return upload


def reject_held(session: Session, upload_id: int, actor: str, *, now: datetime, kept_at: str) -> Upload:
    """A person refused a held feed: ``rejected``, nothing applied."""
    upload = held(session, upload_id)
    message = f"held feed rejected by {actor}: {upload.message or ''}".rstrip(": ")
    finish(session, upload, UploadStatus.REJECTED, message, now=now)
    upload.kept_at = kept_at
    return upload


@dataclass(frozen=True)
class Duplicate:
    """An earlier upload this one repeats, and the rule that says so (shown in the history)."""

    of: Upload
    reason: str


def find_duplicate(session: Session, upload: Upload, *, once: bool) -> Duplicate | None:
    """Whether applying ``upload`` (a feed) would repeat an earlier one. Call it under the source lock.

    ``once``: content that may be applied a single time (an adjust-mode feed:
    each file is a set of changes). Otherwise the feed is a statement of the
    stock (set mode), a no-op only when it equals the source's latest applied
    feed, or a feed held for approval; older content sent again after a
    different feed is a new statement and is applied.
    """
    if upload.kind != "feed" or upload.source_id is None:
        return None
    same = select(Upload).where(Upload.source_id == upload.source_id, Upload.kind == "feed",
                                Upload.id != upload.id, Upload.sha256 == upload.sha256)
    if once:
        earlier = session.scalar(same.where(Upload.status.in_(APPLIED)).order_by(Upload.id).limit(1))
        if earlier is not None:
            return Duplicate(earlier, f"same content as upload {earlier.id} ({earlier.original_name}), "
                                      "and an adjust feed is applied once; not applied again")
    else:
        latest = session.scalar(
            select(Upload).where(Upload.source_id == upload.source_id, Upload.kind == "feed",
                                 Upload.id != upload.id, Upload.status.in_(APPLIED))
            .order_by(Upload.finished_at.desc(), Upload.id.desc()).limit(1))
        if latest is not None and latest.sha256 == upload.sha256:
            return Duplicate(latest, f"same content as the latest applied feed, upload {latest.id} "
                                     f"({latest.original_name}); nothing to change")
    held_one = session.scalar(same.where(Upload.status == UploadStatus.HELD).order_by(Upload.id).limit(1))
    if held_one is not None:
        return Duplicate(held_one, f"same content as upload {held_one.id} ({held_one.original_name}), "
                                   "held for approval; not applied")
    return None


def record_apply(session: Session, upload: Upload, *, once: bool, node: str | None, now: datetime) -> None:
    """Mark ``upload`` applied in this transaction; the database refuses a second apply
    of it, and with ``once`` a second apply of its content to the same source."""
    session.add(UploadApply(upload_id=upload.id, source_id=upload.source_id, sha256=upload.sha256,
                            once=once, node=node, applied_at=now))
    session.flush()


def replace_errors(session: Session, upload_id: int, errors: Iterable[ErrorTuple]) -> int:
    """Store an upload's row errors (row, column, value, sku, message), replacing any from a crashed try."""
    session.execute(delete(UploadError).where(UploadError.upload_id == upload_id))
    batch = [
        {"upload_id": upload_id, "row": r, "column": _fit(c), "value": v, "sku": _fit(s), "message": m}
        for r, c, v, s, m in errors
    ]
    if batch:
        session.execute(insert(UploadError), batch)
    return len(batch)


_SHORT_TEXT = 200  # upload_errors.column and .sku are String(200); value and message are Text


def _fit(text: str | None) -> str | None:
    """A header or SKU cut to its column: a 10,000-character "SKU" is a row error, not a failed commit.

    The error's value keeps the whole text.
    """
    if text is None or len(text) <= _SHORT_TEXT:
        return text
    return text[:_SHORT_TEXT - 1] + "\u2026"


def forget(session: Session, upload_id: int) -> None:
    """Drop the row of a file that was never claimed (someone else took it)."""
    session.execute(delete(Upload).where(Upload.id == upload_id))


def lanes(session: Session, upload_ids: Iterable[int], node: str) -> dict[int, tuple[str, int]]:
    """The processing lane of each of ``node``'s uploads: ("s", source) or ("m", market)."""
    ids = list(upload_ids)
    if not ids:
        return {}
    rows = session.execute(select(Upload.id, Upload.source_id, Upload.market_id)
                           .where(Upload.id.in_(ids), mine(node)))
    # One of the two is set (the uploads_one_owner constraint).
    return {uid: ("m", m) if m is not None else ("s", int(s or 0)) for uid, s, m in rows}


def mine(node: str) -> ColumnElement[bool]:
    """The uploads ``node`` holds; rows from before nodes were recorded count as every node's."""
    return or_(Upload.node == node, Upload.node.is_(None))


def unfinished(session: Session, node: str) -> list[Upload]:
    """Uploads ``node`` claimed whose outcome was not committed; another node's are never touched."""
    return list(session.scalars(
        select(Upload).where(Upload.status.in_(UNFINISHED), mine(node)).order_by(Upload.id)
    ))


@dataclass(frozen=True)
class HistoryRow:
    id: int
    merchant: str
    source: str  # the inventory source, or "market:<name>" for order files
    kind: str
    original_name: str
    status: str
    protocol: str
    user: str | None
    remote_addr: str | None
    size: int
    sha256: str
    elapsed_s: float | None  # how long the transfer took (FTP/SFTP), when known
    rows: int
    applied: int
    unchanged: int
    errors: int
    zeroed: int
    stale: int
    message: str | None
    warnings: str | None
    duplicate_of: int | None
    received_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _history_row(upload: Upload, merchant: str, source: str | None, market: str | None) -> HistoryRow:
    return HistoryRow(
        id=upload.id, merchant=merchant, source=source if source is not None else f"market:{market}",
        kind=upload.kind, original_name=upload.original_name,
        status=upload.status, protocol=upload.protocol, user=upload.user,
        remote_addr=upload.remote_addr, size=upload.size, sha256=upload.sha256,
        elapsed_s=upload.elapsed_s, rows=upload.rows,
        applied=upload.applied, unchanged=upload.unchanged, errors=upload.errors,
        zeroed=upload.zeroed, stale=upload.stale, message=upload.message,
        warnings=upload.warnings, duplicate_of=upload.duplicate_of,
        received_at=upload.received_at, started_at=upload.started_at,
        finished_at=upload.finished_at,
    )


def _owned(query: SelectT) -> SelectT:
    """Join an upload to its source or market, and to the merchant of either."""
    return (query.select_from(Upload)
            .outerjoin(Source, Upload.source_id == Source.id)
            .outerjoin(MarketRecord, Upload.market_id == MarketRecord.id)
            .join(Merchant, Merchant.id == func.coalesce(Source.merchant_id, MarketRecord.merchant_id)))


def history(
    session: Session, *, merchant: str | None = None, source: str | None = None,
    market: str | None = None, status: str | None = None, since: datetime | None = None,
    limit: int | None = 100,
) -> list[HistoryRow]:
    return list(iter_history(session, merchant=merchant, source=source, market=market, status=status,
                             since=since, limit=limit))


_HISTORY_COLUMNS = tuple(getattr(Upload, f.name) for f in fields(HistoryRow)
                         if f.name not in ("merchant", "source"))


def iter_history(
    session: Session, *, merchant: str | None = None, source: str | None = None,
    market: str | None = None, status: str | None = None, since: datetime | None = None,
    limit: int | None = None, batch: int = 1000,
) -> Iterator[HistoryRow]:
    """The history newest first, read ``batch`` rows at a time (a server-side cursor on
    PostgreSQL), so a history of millions of uploads is written out in constant memory."""
    query = _owned(select(Merchant.name, Source.name, MarketRecord.name, *_HISTORY_COLUMNS)).order_by(
        Upload.id.desc())
    if limit is not None:
        query = query.limit(limit)
    if merchant:
        query = query.where(Merchant.name == merchant)
    if source:
        query = query.where(Source.name == source)
    if market:
        query = query.where(MarketRecord.name == market)
    if status:
        query = query.where(Upload.status == status)
    if since:
        query = query.where(Upload.received_at >= since)
    names = [c.key for c in _HISTORY_COLUMNS]
    for merchant_name, source_name, market_name, *values in session.execute(
            query.execution_options(yield_per=batch)):
        yield HistoryRow(merchant=merchant_name,
                         source=source_name if source_name is not None else f"market:{market_name}",
                         **dict(zip(names, values, strict=True)))


@dataclass(frozen=True)
class ErrorRow:
    row: int | None
    column: str | None
    value: str | None
    sku: str | None
    message: str


def show(session: Session, upload_id: int) -> tuple[HistoryRow, list[ErrorRow]]:
    found = session.execute(
        _owned(select(Upload, Merchant.name, Source.name, MarketRecord.name)).where(Upload.id == upload_id)
    ).first()
    if found is None:
        raise NotFound(f"no upload with id {upload_id}")
    errors = session.scalars(
        select(UploadError).where(UploadError.upload_id == upload_id).order_by(UploadError.id)
    )
    return _history_row(*found), [ErrorRow(e.row, e.column, e.value, e.sku, e.message) for e in errors]
