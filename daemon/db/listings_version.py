"""``markets.listings_version``: bumped by every transaction that adds a market's listings.

A market's lines kept outside the database (``db.market_lines``) are valid,
as far as its listings go, exactly while this number is what it was when
they were read. Listings are only ever added (a market's removal cascades
them away with it), and only through the ORM: the flush listener below bumps
every market whose listings a flush adds, in the same transaction. A writer
that inserts listings with SQL must call ``bump`` itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from daemon.db.models import Listing, MarketRecord


def bump(session: Session, market_id: int) -> None:
    session.connection().execute(update(MarketRecord).where(MarketRecord.id == market_id)
                                 .values(listings_version=MarketRecord.listings_version + 1))


@event.listens_for(Session, "before_flush")
def _bump_markets_with_new_listings(session: Session, _context: Any, _instances: Any) -> None:
    # A deleted listing counts too: nothing deletes one today, and a missed
    # bump would leave a stale line in a feed.
    touched = {obj.market_id for obj in (*session.new, *session.deleted) if isinstance(obj, Listing)}
    for market_id in sorted(touched):
        bump(session, market_id)
