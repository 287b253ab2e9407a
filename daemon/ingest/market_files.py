"""Order and cancellation files from a market's inbox: the same lifecycle as feeds.

The file is already claimed, recorded and looked at (duplicate, empty, too
big: ``Processor._first_look``); here it is applied in one
transaction (order lines, allocations, ledger, row errors and the upload's
outcome), re-checking the upload's status first so it never applies twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from daemon.db import uploads
from daemon.db.models import Upload
from daemon.db.orders import apply_cancellation_file, apply_order_file
from daemon.errors import FeedError


def apply_market_file(
    sessions: sessionmaker[Session], upload_id: int, path: Path, *,
    finish: Callable[..., object], outcome_of: Callable[[Upload], object], now: datetime,
) -> object:
    # Duplicates, empty and oversized files were settled by Processor._first_look.
    try:
        with sessions() as session, session.begin():
            upload = session.get(Upload, upload_id, populate_existing=True)
            assert upload is not None and upload.market_id is not None
            if upload.status in uploads.FINAL:
                return outcome_of(upload)
            ref = f"upload:{upload_id}"
            if upload.kind == "orders":
                res = apply_order_file(session, upload.market_id, path, upload_ref=ref, now=now,
                                       actor=f"upload:{upload.protocol}")
                applied, unchanged = res.imported, res.skipped
                note = (f"{res.imported} line(s) imported, {res.skipped} already imported"
                        + (f", {res.oversold} oversold" if res.oversold else ""))
            else:
                res = apply_cancellation_file(session, upload.market_id, path, upload_ref=ref,  # type: ignore[assignment]
                                              now=now, actor=f"upload:{upload.protocol}")
                applied, unchanged = res.cancelled, res.already_cancelled + res.recorded_ahead  # type: ignore[attr-defined]
                note = (f"{res.cancelled} line(s) cancelled, {res.restocked} restocked, "  # type: ignore[attr-defined]
                        f"{res.refused} restock(s) refused, {res.already_cancelled} already cancelled")  # type: ignore[attr-defined]
            errors = [(e.row, e.column, e.value, None, e.message) for e in res.row_errors]
            uploads.clear_errors(session, upload_id)
            uploads.add_errors(session, upload_id, errors)
            counts = {"rows": res.rows, "applied": applied, "unchanged": unchanged,
                      "errors": len(errors), "zeroed": 0, "stale": 0}
            if res.rows == 0:
                return finish(session, upload, "rejected", "the file has a header but no rows",
                              counts=counts)
            if errors and applied + unchanged == 0:
                return finish(session, upload, "rejected", f"no valid rows: {len(errors)} row error(s)",
                              counts=counts)
            status = "applied_with_errors" if errors else "applied"
            return finish(session, upload, status, note, counts=counts)
    except FeedError as exc:
        with sessions() as session, session.begin():
            upload = session.get(Upload, upload_id, populate_existing=True)
            assert upload is not None
            if upload.status in uploads.FINAL:
                return outcome_of(upload)
            return finish(session, upload, "rejected", f"{upload.original_name}: {exc}")
