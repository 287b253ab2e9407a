"""What a market's listing file said about each listing beyond its quantity, for the formats that write it back.

Today that is Shopify's: the locations a variant is stocked at, with the
product handle and option values its inventory file names it by
(``models.ListingLocation``). A format asks for it by name
(``Format.listing_data``); ``fetch`` adds one column per name to the
listing ids it is given, and is never called for the formats that need
nothing, so their exports pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import polars as pl
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from daemon.db.models import Listing, ListingLocation

# A location as the writer gets it: one struct per location the listing came with.
LOCATION = pl.Struct({"location": pl.Utf8(), "handle": pl.Utf8(), "option1": pl.Utf8(),
                      "option2": pl.Utf8(), "option3": pl.Utf8()})
# (sku, location, handle, option1, option2, option3), as ``formats.listings`` reads them.
LocationRow = tuple[str, str, str, str | None, str | None, str | None]

_CHUNK = 500  # ids per IN list
_BY_MARKET = 5_000  # above this many ids, one query over the market is cheaper than IN lists


def _locations(session: Session, market_id: int, ids: pl.Series) -> pl.DataFrame:
    columns = (ListingLocation.listing_id, ListingLocation.location, ListingLocation.handle,
               ListingLocation.option1, ListingLocation.option2, ListingLocation.option3)
    rows: list[tuple[object, ...]] = []
    if ids.len() > _BY_MARKET:
        rows = [tuple(r) for r in session.execute(select(*columns).join(Listing, Listing.id == ListingLocation.listing_id)
                                                  .where(Listing.market_id == market_id))]
    else:
        wanted = ids.to_list()
        for start in range(0, len(wanted), _CHUNK):
            rows += [tuple(r) for r in session.execute(select(*columns).where(
                ListingLocation.listing_id.in_(wanted[start:start + _CHUNK])))]
    flat = pl.DataFrame(rows, orient="row", schema={"listing_id": pl.Int64(), **LOCATION.to_schema()})
    # By name, so a listing's rows come out in the same order on every export and database.
    return (flat.sort("listing_id", "location")
            .group_by("listing_id", maintain_order=True)
            .agg(pl.struct(*LOCATION.to_schema()).alias("locations")))


_FETCHERS: dict[str, Callable[[Session, int, pl.Series], pl.DataFrame]] = {"locations": _locations}
KINDS = frozenset(_FETCHERS)


def fetch(session: Session, market_id: int, listing_ids: pl.Series, kinds: Sequence[str]) -> pl.DataFrame:
    """``listing_id`` and one column per kind, for every id given (null where a listing has none)."""
    out = pl.DataFrame({"listing_id": listing_ids.cast(pl.Int64)})
    for kind in kinds:
        out = out.join(_FETCHERS[kind](session, market_id, listing_ids), on="listing_id", how="left",
                       maintain_order="left")
    return out


def replace_locations(session: Session, listing_ids: Mapping[str, int], rows: Sequence[LocationRow]) -> int:
    """The locations of the listings ``listing_ids`` names (by SKU) become those of ``rows``.

    A new listing file is the market's word on where each of its variants is
    stocked now, so the listings it names lose the locations it no longer
    lists; listings it does not name keep theirs. Returns the rows written.
    """
    ids = list(listing_ids.values())
    for start in range(0, len(ids), _CHUNK):
        session.execute(delete(ListingLocation).where(ListingLocation.listing_id.in_(ids[start:start + _CHUNK]))
                        .execution_options(synchronize_session=False))
    records = {}
    for sku, location, handle, option1, option2, option3 in rows:
        if sku in listing_ids:
            records[(listing_ids[sku], location)] = {
                "listing_id": listing_ids[sku], "location": location, "handle": handle,
                "option1": option1, "option2": option2, "option3": option3}
    if records:
        session.execute(insert(ListingLocation), list(records.values()))
    return len(records)
