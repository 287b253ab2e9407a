"""``sources.stock_version``: bumped by every transaction that writes a source's stock.

A copy of a source's stock held outside the database (``ingest.stock_cache``)
is valid exactly while this number is what it was when the copy was made.
Two writers exist, and both bump it:

- ORM writes of ``Stock`` rows (``db.stock.write_change``, and whatever comes
  next): the flush listener below bumps every source whose rows the flush
  adds, changes or deletes, in the same transaction;
- ``db.bulk.write_plan``, which writes stock with SQL, calls ``bump``.

No other module may write the stock table with SQL (a test enforces it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text, update
from sqlalchemy.orm import Session

from daemon.db.models import Source, Stock


def bump(session: Session, source_id: int) -> None:
    # Core, not the ORM: no autoflush, and no Source object to keep in step.
    session.connection().execute(
        update(Source).where(Source.id == source_id).values(stock_version=Source.stock_version + 1))


def current(session: Session, source_id: int) -> int:
    """The number as this transaction sees it (not the possibly stale ORM attribute)."""
    return session.connection().execute(
        text("SELECT stock_version FROM sources WHERE id = :id"), {"id": source_id}).scalar_one()


@event.listens_for(Session, "before_flush")
def _bump_written_sources(session: Session, _context: Any, _instances: Any) -> None:
    # Dirty includes objects whose attributes were set to their old values:
    # a needless bump only costs a cache miss, a missed one would be wrong.
    touched = {obj.source_id for obj in (*session.new, *session.dirty, *session.deleted)
               if isinstance(obj, Stock)}
    for source_id in sorted(touched):
        bump(session, source_id)
