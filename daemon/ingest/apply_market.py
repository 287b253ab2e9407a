"""Apply one order or cancellation file from a market: the same lifecycle as a feed.

The file was read in the parser worker (``contained``), before this
transaction; here its rows are applied in one transaction with the order
lines, allocations, ledger, row errors and the upload's outcome, after
re-checking the upload's status so it never applies twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from daemon.db import orders, uploads
from daemon.db.orders import CancelResult, LineResult
from daemon.errors import FeedError
from daemon.formats.feeds import RowError
from daemon.formats.orders import ParsedCancellations, ParsedOrders
from daemon.ingest.outcomes import Outcome, Verify, finish, finish_alone, outcome_of
from daemon.inventory.uploads import UploadStatus, outcome


@dataclass
class OrderFileResult:
    """What one order file did. ``errors`` counts ``row_errors``."""

    market: str
    rows: int = 0
    imported: int = 0
    skipped: int = 0  # already imported, or the same line twice in the file
    errors: int = 0
    oversold: int = 0  # lines with a shortfall
    format: str = "generic"
    row_errors: list[RowError] = field(default_factory=list)
    lines: list[LineResult] = field(default_factory=list)


@dataclass
class CancellationFileResult:
    market: str
    rows: int = 0
    cancelled: int = 0  # lines cancelled by this file
    already_cancelled: int = 0
    recorded_ahead: int = 0
    restocked: int = 0
    refused: int = 0
    errors: int = 0
    row_errors: list[RowError] = field(default_factory=list)
    lines: list[CancelResult] = field(default_factory=list)


def apply_orders(session: Session, market_id: int, parsed: ParsedOrders, *, upload_ref: str,
                 now: datetime, actor: str) -> OrderFileResult:
    """Apply an order file's valid rows inside the caller's transaction.

    Lines already imported for the market are skipped and counted, as are
    identical repeats within the file.
    """
    market = orders.get_market_by_id(session, market_id)
    applied = orders.apply_order_lines(session, market, parsed.rows, now=now, actor=actor,
                                       upload_ref=upload_ref)
    return OrderFileResult(
        market=market.name, rows=parsed.total_rows, imported=applied.imported,
        skipped=applied.skipped + parsed.duplicates, errors=len(parsed.errors), oversold=applied.oversold,
        format=parsed.format, row_errors=list(parsed.errors), lines=applied.lines)


def apply_cancellations(session: Session, market_id: int, parsed: ParsedCancellations, *,
                        upload_ref: str, now: datetime, actor: str) -> CancellationFileResult:
    """Apply a cancellation file's valid rows inside the caller's transaction."""
    market = orders.get_market_by_id(session, market_id)
    done = orders.apply_cancellation_rows(session, market, parsed.rows, upload_ref=upload_ref, now=now,
                                          actor=actor)
    errors = list(parsed.errors) + [RowError(row, "order_id", order_id, why)
                                    for row, order_id, why in done.refusals]
    errors.sort(key=lambda e: e.row or 0)
    return CancellationFileResult(
        market=market.name, rows=parsed.total_rows, cancelled=done.cancelled,
        already_cancelled=done.already_cancelled, recorded_ahead=done.recorded_ahead,
        restocked=done.restocked, refused=done.refused, errors=len(errors), row_errors=errors,
        lines=done.lines)


class MarketReaders(Protocol):
    """What reads a market's files: the parser pool (``contained.ParserPool``)."""

    def read_orders(self, path: Path) -> ParsedOrders: ...

    def read_cancellations(self, path: Path) -> ParsedCancellations: ...


class MarketFileApplier:
    def __init__(self, sessions: sessionmaker[Session], readers: MarketReaders,
                 clock: Callable[[], datetime], *, node: str | None = None) -> None:
        self._node = node
        self._sessions = sessions
        self._readers = readers
        self._clock = clock

    def apply(self, upload_id: int, kind: str, path: Path, verify: Verify | None = None) -> Outcome:
        with self._sessions() as session:
            upload = uploads.get(session, upload_id)
            original, protocol = upload.original_name, upload.protocol
        try:
            parsed = (self._readers.read_orders(path) if kind == "orders"
                      else self._readers.read_cancellations(path))
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
            assert upload.market_id is not None
            ref, actor = f"upload:{upload_id}", f"upload:{protocol}"
            result: OrderFileResult | CancellationFileResult
            uploads.record_apply(session, upload, once=False, node=self._node, now=now)
            if isinstance(parsed, ParsedOrders):
                result = apply_orders(session, upload.market_id, parsed, upload_ref=ref, now=now, actor=actor)
                applied, unchanged = result.imported, result.skipped
                repeated = result.skipped
                note = (f"{result.imported} line(s) imported, {result.skipped} already imported"
                        + (f", {result.oversold} oversold" if result.oversold else ""))
            else:
                result = apply_cancellations(session, upload.market_id, parsed, upload_ref=ref, now=now,
                                             actor=actor)
                applied, unchanged = result.cancelled, result.already_cancelled + result.recorded_ahead
                repeated = result.already_cancelled
                note = (f"{result.cancelled} line(s) cancelled, {result.restocked} restocked, "
                        f"{result.refused} restock(s) refused, {result.already_cancelled} already cancelled")
            errors = [(e.row, e.column, e.value, None, e.message) for e in result.row_errors]
            uploads.replace_errors(session, upload_id, errors)
            counts = {"rows": result.rows, "applied": applied, "unchanged": unchanged,
                      "errors": len(errors), "zeroed": 0, "stale": 0}
            status, reason = outcome(rows=result.rows, errors=len(errors), taken=applied + unchanged,
                                     repeated=repeated)
            return finish(session, upload, status, reason or note, now=now, counts=counts, detail=result)
