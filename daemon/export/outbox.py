"""Composing an export: the market's lines -> a file -> an outbox row, before anything is sent.

A market with an undelivered export gets that one back, never a new one:
what is sent next is computed only against what the market was delivered
(``db.exports``). The file's bytes are in the row, so a resend is the same
file under the same name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

import polars as pl
from sqlalchemy.orm import Session

from daemon.db import exports as db_exports
from daemon.db import listing_details
from daemon.db.market_lines import market_lines
from daemon.db.models import ExportRecord, MarketRecord
from daemon.errors import ExportError
from daemon.export import plan
from daemon.export.formats import FORMATS, Format
from daemon.settings import ExportSettings

Lines = Callable[[Session, MarketRecord], pl.DataFrame]  # db.market_lines, or a LinesCache's


def preview(session: Session, market: MarketRecord, export: ExportSettings, kind: plan.Kind) -> tuple[str, bytes, int]:
    """(format, file bytes, lines) of the export ``kind`` would send now; nothing is written."""
    lines = plan.select_lines(market_lines(session, market), kind)
    fmt = FORMATS[export.format]
    return fmt.name, _write(session, market, fmt, lines, export), lines.height


def _write(session: Session, market: MarketRecord, fmt: Format, lines: pl.DataFrame, export: ExportSettings) -> bytes:
    """The file for ``lines``, with the listing data the format asks for joined on (most ask for none).

    A writer raises ValueError for what its format cannot carry (a Shopify
    variant with no location, an unknown csv column): an ``ExportError``
    naming the market and the format, not a traceback.
    """
    try:
        if not fmt.listing_data:
            return fmt.write(lines.select("sku", "quantity"), export.options)
        details = listing_details.fetch(session, market.id, lines.get_column("listing_id"), fmt.listing_data)
        frame = lines.select("listing_id", "sku", "quantity").join(details, on="listing_id", how="left",
                                                                    maintain_order="left")
        return fmt.write(frame.drop("listing_id"), export.options)
    except ValueError as exc:
        raise ExportError(f"market {market.name}: its {fmt.name} file cannot be written: {exc}") from None


def compose(session: Session, market: MarketRecord, export: ExportSettings, kind: plan.Kind, *,
            trigger: str, destination: str, now: datetime, node: str | None,
            lines_of: Lines = market_lines,
            composed: Callable[[int, str, pl.DataFrame], None] | None = None) -> ExportRecord | None:
    """The market's next export: its undelivered one, or a new one of ``kind`` (None: an empty delta).

    In the caller's transaction; another daemon composing at the same moment
    makes the flush fail on ``ix_exports_undelivered`` (an IntegrityError):
    the caller rolls back and takes that one. ``composed`` is told (id,
    sha256, the lines' listing ids and quantities) of a new export.
    """
    pending = db_exports.undelivered(session, market.id)
    if pending is not None:
        return pending
    lines = plan.select_lines(lines_of(session, market), kind)
    if lines.height == 0 and kind == "delta":
        return None
    fmt = FORMATS[export.format]
    content = _write(session, market, fmt, lines, export)
    record = db_exports.add_export(
        session, market_id=market.id, kind=kind, trigger=trigger, file_name="", format=fmt.name,
        destination=destination[:300], sha256=hashlib.sha256(content).hexdigest(), size=len(content),
        line_count=lines.height, content=content, lines=db_exports.lines_blob(lines), node=node, created_at=now)
    # The name carries the row's id: unique per delivery, the same on a resend.
    record.file_name = plan.file_name(export.file_name, market=market.name, kind=kind, now=now,
                                      delivery=record.id, ext=fmt.extension)
    if composed is not None:
        composed(record.id, record.sha256, lines.select("listing_id", "quantity"))
    return record
