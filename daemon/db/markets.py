"""Markets and listings: config sync, ``market add``, listing imports, what a market is sent.

The rules are the domain's (``daemon.inventory.channels`` and ``.listings``);
this module reads and writes the rows around them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from daemon.db.catalog import get_merchant, get_or_create_product
from daemon.db.listing_details import LocationRow, replace_locations
from daemon.db.models import Listing, MarketRecord, Merchant, MerchantPolicy, Product, Source, Stock
from daemon.db.stock import current_level, lock_source, write_change
from daemon.errors import FeedError, NotFound, UserError
from daemon.inventory import channels
from daemon.inventory.allocation import MERCHANT_FULFILLED
from daemon.inventory.listings import ListingRow, has_integrated, import_listings
from daemon.inventory.stock import Change


class MarketSpec(Protocol):
    """A market's settings, checked already (``settings.MarketSettings`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def sources(self) -> Sequence[str] | None: ...
    @property
    def buffer(self) -> int: ...
    @property
    def percent(self) -> int: ...
    @property
    def maximum(self) -> int | None: ...
    @property
    def minimum(self) -> int: ...
    @property
    def restock(self) -> str: ...


class MerchantMarkets(Protocol):
    """A configured merchant's markets and order rules (``settings.MerchantSettings`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def split_orders(self) -> bool: ...
    @property
    def restock_window_days(self) -> int: ...
    @property
    def markets(self) -> Sequence[MarketSpec]: ...


class MarketsConfig(Protocol):
    @property
    def merchants(self) -> Sequence[MerchantMarkets]: ...

# --- config and market records -------------------------------------------------


def _sources_json(sources: Sequence[str] | None) -> str | None:
    return None if sources is None else json.dumps(list(dict.fromkeys(sources)))


def market_sources(market: MarketRecord) -> list[str] | None:
    """The source names feeding ``market``; None means every source of the merchant."""
    return None if market.sources is None else list(json.loads(market.sources))


def _apply_settings(market: MarketRecord, m: MarketSpec) -> None:
    market.kind, market.sources = m.kind, _sources_json(m.sources)
    market.buffer, market.percent, market.maximum, market.minimum = m.buffer, m.percent, m.maximum, m.minimum
    market.restock = m.restock


def sync_markets(session: Session, settings: MarketsConfig, now: datetime) -> None:
    """Create or update the markets the config names, and each merchant's order policy.

    Call it after ``sync_config`` (the merchants must exist). Nothing is
    deleted: a market dropped from the config keeps its listings and orders.
    A market added with ``market add`` whose name the config later uses
    becomes config-managed.
    """
    for m in settings.merchants:
        merchant = session.scalar(select(Merchant).where(Merchant.name == m.name))
        if merchant is None:
            continue  # sync_config has not run for it yet
        policy = session.get(MerchantPolicy, merchant.id)
        if policy is None:
            policy = MerchantPolicy(merchant_id=merchant.id, first_market_id=None)
            session.add(policy)
        policy.split_orders, policy.restock_window_days = m.split_orders, m.restock_window_days
        for ms in m.markets:
            market = session.scalar(select(MarketRecord).where(
                MarketRecord.merchant_id == merchant.id, MarketRecord.name == ms.name))
            if market is None:
                market = MarketRecord(merchant_id=merchant.id, name=ms.name, created_at=now)
                session.add(market)
            _apply_settings(market, ms)
            market.from_config = True
    session.flush()


def market_ids(session: Session, merchant: str) -> list[tuple[int, int, str]]:
    """(market id, merchant id, name) of every market of a merchant, config or CLI."""
    return [(i, m, n) for i, m, n in session.execute(
        select(MarketRecord.id, MarketRecord.merchant_id, MarketRecord.name).join(Merchant)
        .where(Merchant.name == merchant).order_by(MarketRecord.id))]


def get_policy(session: Session, merchant_id: int, *, lock: bool = False) -> MerchantPolicy:
    """The merchant's order policy row (created with defaults when missing)."""
    query = select(MerchantPolicy).where(MerchantPolicy.merchant_id == merchant_id)
    policy = session.scalar(query.with_for_update() if lock else query)
    if policy is None:
        policy = MerchantPolicy(merchant_id=merchant_id, split_orders=False, restock_window_days=14,
                                first_market_id=None)
        session.add(policy)
        session.flush()
    return policy


def add_market(session: Session, merchant: str, spec: MarketSpec, *, now: datetime) -> MarketRecord:
    """Add a market in the database (``market add``); ``spec`` is checked like the config's."""
    owner = get_merchant(session, merchant)
    if session.scalar(select(MarketRecord.id).where(MarketRecord.merchant_id == owner.id,
                                                    MarketRecord.name == spec.name)) is not None:
        raise UserError(f"merchant {merchant!r} already has a market named {spec.name!r}")
    if spec.sources is not None:
        known = set(session.scalars(select(Source.name).where(Source.merchant_id == owner.id)))
        unknown = [s for s in spec.sources if s not in known]
        if unknown:
            raise NotFound(f"no source named {', '.join(map(repr, unknown))} for merchant {merchant!r} "
                           f"(sources: {', '.join(sorted(known)) or 'none'})")
    market = MarketRecord(merchant_id=owner.id, name=spec.name, from_config=False, created_at=now)
    _apply_settings(market, spec)
    session.add(market)
    get_policy(session, owner.id)
    session.flush()
    return market


def get_market(session: Session, merchant: str, name: str) -> MarketRecord:
    found = session.scalar(select(MarketRecord).join(Merchant).where(
        Merchant.name == merchant, MarketRecord.name == name))
    if found is None:
        names = session.scalars(select(MarketRecord.name).join(Merchant).where(
            Merchant.name == merchant).order_by(MarketRecord.name)).all()
        raise NotFound(f"no market named {name!r} for merchant {merchant!r} "
                       f"(markets: {', '.join(names) or 'none'})")
    return found


def channel_market(market: MarketRecord) -> channels.Market:
    """The domain's view of a market: its sources and channel rules."""
    sources = market_sources(market)
    return channels.Market(
        name=market.name,
        sources=None if sources is None else frozenset(sources),
        rules=channels.ChannelRules(buffer=market.buffer, percent=market.percent,
                                    maximum=market.maximum, minimum=market.minimum),
    )


@dataclass(frozen=True)
class MarketInfo:
    merchant: str
    name: str
    kind: str
    sources: list[str] | None
    buffer: int
    percent: int
    maximum: int | None
    minimum: int
    restock: str
    from_config: bool
    connected_at: datetime | None
    first_integration: bool
    listings: int


def list_markets(session: Session, *, merchant: str | None = None) -> list[MarketInfo]:
    query = (select(MarketRecord, Merchant.name, MerchantPolicy.first_market_id)
             .join(Merchant, MarketRecord.merchant_id == Merchant.id)
             .outerjoin(MerchantPolicy, MerchantPolicy.merchant_id == Merchant.id)
             .order_by(Merchant.name, MarketRecord.name))
    if merchant:
        query = query.where(Merchant.name == merchant)
    out = []
    for market, merchant_name, first_id in session.execute(query):
        count = len(session.scalars(select(Listing.id).where(Listing.market_id == market.id)).all())
        out.append(MarketInfo(merchant_name, market.name, market.kind, market_sources(market),
                              market.buffer, market.percent, market.maximum, market.minimum,
                              market.restock, market.from_config, market.connected_at,
                              first_id == market.id, count))
    return out


def mark_needs_update(session: Session, merchant_id: int, markets: Iterable[str],
                      product_ids: Iterable[int], now: datetime) -> int:
    """Flag the listings of ``product_ids`` on the named markets: send them the new quantity."""
    names, products = list(dict.fromkeys(markets)), list(dict.fromkeys(product_ids))
    if not names or not products:
        return 0
    ids = select(MarketRecord.id).where(MarketRecord.merchant_id == merchant_id,
                                        MarketRecord.name.in_(names))
    result = session.execute(
        update(Listing).where(Listing.market_id.in_(ids), Listing.product_id.in_(products))
        .values(needs_update=True, updated_at=now).execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)  # an UPDATE's result has a cursor


# --- listing import (first integration wins) ------------------------------------


@dataclass
class ListingImportResult:
    market: str
    first_integration: bool
    listings: int  # SKUs on the file
    set_quantities: int  # merchant-fulfilled levels changed by the import
    needs_update: int  # listings to be sent the current inventory
    first_market: str | None
    skus_needing_update: list[str] = field(default_factory=list)


def import_listing_rows(
    session: Session, market: MarketRecord, rows: Sequence[tuple[str, int]], *,
    now: datetime, actor: str, reference: str | None = None, locations: Sequence[LocationRow] | None = None,
) -> ListingImportResult:
    """Import a market's listings. The merchant's first market sets merchant-fulfilled
    quantities (ledger reason import); a later market's quantities are left alone and
    its listings are marked to be sent the current inventory.

    ``locations`` (a Shopify inventory export's) replace the locations of the
    listings on the file; None (a file without them) leaves them as they are.
    """
    mf = session.scalar(select(Source).where(Source.merchant_id == market.merchant_id,
                                             Source.kind == MERCHANT_FULFILLED))
    if mf is None:
        raise UserError("the merchant has no merchant-fulfilled source: run with the config synced first")
    # The merchant-fulfilled lock serialises two markets' first imports.
    lock_source(session, mf.id)
    policy = get_policy(session, market.merchant_id, lock=True)
    first = session.get(MarketRecord, policy.first_market_id) if policy.first_market_id else None
    integrated = has_integrated(first.name if first else None, market.name)

    products: dict[str, Product] = {}
    stock_rows: dict[str, Stock | None] = {}
    levels = {}
    for sku, _ in rows:
        if sku in products:
            continue
        products[sku] = get_or_create_product(session, market.merchant_id, sku, now)
        if not integrated:
            stock_rows[sku], levels[sku] = current_level(session, mf.id, products[sku].id)
    try:
        result = import_listings(integrated, [ListingRow(s, q) for s, q in rows], levels, now,
                                 source=mf.name, actor=actor, reference=reference)
    except ValueError as exc:
        raise FeedError(str(exc)) from None
    entries = {e.sku: e for e in result.entries}
    for sku, level in result.levels.items():
        write_change(session, stock_rows.get(sku), mf.id, products[sku].id,
                     Change(level=level, entry=entries.get(sku)), now)
    listed = dict(rows)
    existing = {lst.product_id: lst for lst in session.scalars(
        select(Listing).where(Listing.market_id == market.id))}
    on_file: dict[str, Listing] = {}
    for status in result.listings:
        product = products[status.sku]
        listing = existing.get(product.id)
        if listing is None:
            listing = Listing(market_id=market.id, product_id=product.id, last_sent_quantity=None)
            session.add(listing)
        listing.listed_quantity = listed.get(status.sku)
        listing.needs_update = status.needs_update
        listing.updated_at = now
        on_file[status.sku] = listing
    if result.first_integration and policy.first_market_id is None:
        policy.first_market_id, policy.integrated_at = market.id, now
    if market.connected_at is None:
        market.connected_at = now
    session.flush()
    if locations is not None:
        replace_locations(session, {sku: listing.id for sku, listing in on_file.items()}, locations)
    # A later file of the first market can change levels other markets show.
    others = session.scalars(select(MarketRecord.name).where(
        MarketRecord.merchant_id == market.merchant_id, MarketRecord.id != market.id)).all()
    mark_needs_update(session, market.merchant_id, others,
                      [products[sku].id for sku in entries], now)
    needing = [s.sku for s in result.listings if s.needs_update]
    return ListingImportResult(market.name, result.first_integration, len(result.listings),
                               len(entries), len(needing),
                               market.name if result.first_integration else (first.name if first else None),
                               needing)


# --- what a market is sent ------------------------------------------------------


@dataclass(frozen=True)
class MarketLine:
    sku: str
    quantities: dict[str, int]  # per source feeding the market
    available: int
    quantity: int  # what the market should be sent, after its channel rules
    listed: bool
    needs_update: bool
    last_sent_quantity: int | None


def market_view(session: Session, market: MarketRecord, *, sku: str | None = None) -> list[MarketLine]:
    """Every SKU the market lists or its sources stock, with what it should be sent."""
    domain = channel_market(market)
    query = (select(Product.sku, Source.name, Stock.quantity)
             .select_from(Stock).join(Source, Stock.source_id == Source.id)
             .join(Product, Stock.product_id == Product.id)
             .where(Source.merchant_id == market.merchant_id))
    if domain.sources is not None:
        query = query.where(Source.name.in_(sorted(domain.sources)))
    if sku is not None:
        query = query.where(Product.sku == sku)
    by_sku: dict[str, dict[str, int]] = {}
    for product_sku, source, quantity in session.execute(query):
        by_sku.setdefault(product_sku, {})[source] = quantity
    listing_query = (select(Product.sku, Listing.needs_update, Listing.last_sent_quantity)
                     .join(Product, Listing.product_id == Product.id)
                     .where(Listing.market_id == market.id))
    if sku is not None:
        listing_query = listing_query.where(Product.sku == sku)
    listings = {s: (n, q) for s, n, q in session.execute(listing_query)}
    out = []
    for key in sorted(set(by_sku) | set(listings)):
        quantities = by_sku.get(key, {})
        listed = listings.get(key)
        out.append(MarketLine(
            sku=key, quantities=dict(sorted(quantities.items())),
            available=channels.available_sum(quantities, domain.sources),
            quantity=channels.market_quantity(quantities, domain.sources, domain.rules),
            listed=listed is not None, needs_update=bool(listed and listed[0]),
            last_sent_quantity=listed[1] if listed else None,
        ))
    return out


@dataclass
class MarketInventory:
    merchant: str
    market: str
    kind: str
    sources: list[str] | None
    rules: dict[str, int | None]
    inventory: list[MarketLine]


def market_inventory(session: Session, merchant: str, market: str, *, sku: str | None = None) -> MarketInventory:
    """``market show`` / ``inventory --market``: the market's rules and lines."""
    record = get_market(session, merchant, market)
    return MarketInventory(
        merchant=merchant, market=record.name, kind=record.kind, sources=market_sources(record),
        rules={"buffer": record.buffer, "percent": record.percent, "maximum": record.maximum,
               "minimum": record.minimum},
        inventory=market_view(session, record, sku=sku),
    )
