"""Properties over random feeds, orders, cancellations and snapshots.

The events run through the domain functions against an in-memory model (a
dict of levels plus a ledger), the way the database layer will use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.inventory.allocation import Allocation, allocate
from daemon.inventory.cancellations import (
    CancellationKind,
    apply_cancellation,
    restock_decision,
)
from daemon.inventory.channels import (
    ChannelRules,
    Market,
    apply_rules,
    available_sum,
    market_quantity,
)
from daemon.inventory.listings import ListingRow, has_integrated, import_listings
from daemon.inventory.orders import LineKey, OrderLine, OrderOutcomeKind, apply_order_line
from daemon.inventory.snapshots import apply_snapshot, rebase_snapshot
from daemon.inventory.stock import LedgerEntry, Reason, StockLevel, set_quantity

START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
SOURCES = ["mf", "east", "west"]
SKUS = ["A", "B", "C"]
MARKET_NAMES = ["amazon", "ebay", "shop"]
FAST = settings(max_examples=150, deadline=None)

quantities = st.integers(min_value=0, max_value=30)
rules = st.builds(
    ChannelRules,
    buffer=st.integers(0, 10),
    percent=st.integers(0, 100),
    maximum=st.none() | st.integers(0, 40),
    minimum=st.integers(0, 10),
)
markets = st.builds(
    Market,
    name=st.sampled_from(MARKET_NAMES),
    sources=st.none() | st.frozensets(st.sampled_from(SOURCES + ["gone"])),
    rules=rules,
)


# --- channel rules -----------------------------------------------------------


@FAST
@given(available=st.dictionaries(st.sampled_from(SOURCES), st.integers(-20, 50)), market=markets)
def test_a_market_is_never_sent_more_than_its_sources_hold_after_its_rules(available, market):
    sent = market_quantity(available, market.sources, market.rules)
    total = available_sum(available, market.sources)
    r = market.rules
    assert 0 <= sent <= total
    assert sent <= max(0, total - r.buffer) * r.percent // 100
    assert r.maximum is None or sent <= r.maximum
    assert sent == 0 or sent >= r.minimum


@FAST
@given(total=st.integers(0, 500), more=st.integers(0, 50), r=rules)
def test_more_stock_never_sends_less_unless_the_minimum_cuts_it(total, more, r):
    low, high = apply_rules(total, r), apply_rules(total + more, r)
    assert high >= low


# --- allocation --------------------------------------------------------------


@FAST
@given(
    quantity=st.integers(0, 40),
    available=st.dictionaries(st.sampled_from(SOURCES), st.integers(-5, 20)),
    priority=st.permutations(SOURCES),
    split=st.booleans(),
)
def test_an_allocation_accounts_for_every_unit_and_never_takes_what_is_not_there(
    quantity,
    available,
    priority,
    split,
):
    result = allocate(quantity, available, priority, split=split)
    assert result.quantity == quantity
    for source, units in result.taken:
        assert 0 < units <= max(0, available.get(source, 0))
    assert result.shortfall >= 0
    assert (result.shortfall > 0) == (result.shortfall_source is not None)
    if not split:
        assert len(result.taken) <= 1
    else:
        have = sum(max(0, available.get(s, 0)) for s in SOURCES)
        assert result.shortfall == max(0, quantity - have)


# --- snapshots and cancellations ----------------------------------------------


@FAST
@given(
    snapshot=quantities,
    orders=st.lists(st.tuples(st.integers(-60, 60), st.integers(0, 10)), max_size=8),
)
def test_a_rebased_snapshot_accounts_for_every_unit(snapshot, orders):
    stamped = [(START + timedelta(minutes=m), q) for m, q in orders]
    result = rebase_snapshot(snapshot, START, stamped)
    later = sum(q for m, q in orders if m > 0)
    assert result.quantity + result.recounted == snapshot
    assert result.quantity == max(0, snapshot - later)
    assert result.recounted + result.shortfall == later


@FAST
@given(
    origin=st.sampled_from(["market", "stockdrop"]),
    requested=st.booleans(),
    policy=st.sampled_from(["always", "never", "by_origin"]),
    window=st.integers(0, 30),
    extra_minutes=st.integers(1, 60 * 24 * 30),
)
def test_after_the_window_nothing_is_ever_restocked(
    origin, requested, policy, window, extra_minutes
):
    cancelled_at = START + timedelta(days=window, minutes=extra_minutes)
    decision = restock_decision(origin, requested, START, cancelled_at, window, policy)
    assert decision.restock is False
    assert f"more than the {window}-day restock window" in decision.reason


# --- the in-memory model ----------------------------------------------------------


@dataclass
class Model:
    """Levels by (source, sku) and everything the domain functions returned."""

    stock: dict[tuple[str, str], StockLevel] = field(default_factory=dict)
    counted: dict[tuple[str, str], datetime] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    seen: set[LineKey] = field(default_factory=set)
    taken: dict[LineKey, tuple[OrderLine, Allocation]] = field(default_factory=dict)
    cancelled: set[LineKey] = field(default_factory=set)
    restocked: set[LineKey] = field(default_factory=set)
    now: datetime = START

    def levels_of(self, sku: str) -> dict[str, StockLevel | None]:
        return {s: self.stock.get((s, sku)) for s in SOURCES}

    def write(
        self, sku: str, levels: Mapping[str, StockLevel], entries: Iterable[LedgerEntry]
    ) -> None:
        for source, level in levels.items():
            self.stock[(source, sku)] = level
        self.ledger.extend(entries)

    def snapshot(self) -> tuple[dict[tuple[str, str], int], int]:
        return {k: v.quantity for k, v in self.stock.items()}, len(self.ledger)


@dataclass(frozen=True)
class Feed:
    source: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Order:
    line: int  # index into the pool of lines, so resends happen


@dataclass(frozen=True)
class Cancel:
    line: int
    origin: Literal["market", "stockdrop"]
    requested: bool
    days_after: int


@dataclass(frozen=True)
class Snapshot:
    source: str
    sku: str
    quantity: int
    minutes_ago: int


def order_pool() -> st.SearchStrategy[list[OrderLine]]:
    line = st.builds(
        lambda market, order, line_id, sku, qty, minutes: OrderLine(
            market,
            f"O{order}",
            str(line_id),
            sku,
            qty,
            START - timedelta(minutes=minutes),
        ),
        st.sampled_from(MARKET_NAMES),
        st.integers(1, 4),
        st.integers(1, 2),
        st.sampled_from(SKUS),
        st.integers(1, 8),
        st.integers(0, 30),
    )
    return st.lists(line, min_size=1, max_size=6, unique_by=lambda order: order.key)


def events(pool_size: int) -> st.SearchStrategy[list[object]]:
    index = st.integers(0, pool_size - 1)
    event = st.one_of(
        st.builds(Feed, st.sampled_from(SOURCES), st.sampled_from(SKUS), quantities),
        st.builds(Order, index),
        st.builds(Order, index),  # orders twice as likely: most traffic is orders
        st.builds(
            Cancel,
            index,
            st.sampled_from(["market", "stockdrop"]),
            st.booleans(),
            st.integers(0, 20),
        ),
        st.builds(
            Snapshot,
            st.sampled_from(SOURCES),
            st.sampled_from(SKUS),
            quantities,
            st.integers(0, 90),
        ),
    )
    return st.lists(event, max_size=40)


def orders_after_for(model: Model, source: str, sku: str) -> list[tuple[datetime, int]]:
    # What the database would query: imported lines for this SKU, units from this
    # source, net of restocked cancellations.
    result = []
    for key, (line, allocation) in model.taken.items():
        if line.sku != sku:
            continue
        units = allocation.taken_from(source)
        if key in model.restocked:
            units = 0
        result.append((line.ordered_at, units))
    return result


def run(model: Model, pool: list[OrderLine], event: object, split: bool) -> None:
    model.now += timedelta(minutes=1)
    if isinstance(event, Feed):
        run_feed(model, event)
    elif isinstance(event, Order):
        run_order(model, pool[event.line], split)
    elif isinstance(event, Cancel):
        run_cancel(model, pool[event.line], event)
    elif isinstance(event, Snapshot):
        run_snapshot(model, event)


def run_feed(model: Model, event: Feed) -> None:
    key = (event.source, event.sku)
    change = set_quantity(
        model.stock.get(key),
        event.quantity,
        sku=event.sku,
        source=event.source,
        reason=Reason.FEED,
        actor="feed",
        now=model.now,
    )
    if not change.stale:
        entries = [change.entry] if change.entry else []
        model.write(event.sku, {event.source: change.level}, entries)
        model.counted[key] = model.now


def run_order(model: Model, line: OrderLine, split: bool) -> None:
    outcome = apply_order_line(
        line,
        model.levels_of(line.sku),
        priority=SOURCES,
        split=split,
        seen=model.seen,
        markets=MARKET_NAMES,
        now=model.now,
        actor="orders",
    )
    if outcome.kind is OrderOutcomeKind.IMPORTED:
        assert outcome.allocation is not None
        model.seen.add(line.key)
        model.taken[line.key] = (line, outcome.allocation)
        model.write(line.sku, outcome.levels, outcome.entries)
        assert line.market not in outcome.markets_to_update


def run_cancel(model: Model, line: OrderLine, event: Cancel) -> None:
    decision = restock_decision(
        event.origin,
        event.requested,
        line.ordered_at,
        line.ordered_at + timedelta(days=event.days_after),
    )
    imported = model.taken.get(line.key)
    outcome = apply_cancellation(
        line,
        imported[1] if imported else None,
        decision,
        model.levels_of(line.sku),
        cancelled=model.cancelled,
        markets=MARKET_NAMES,
        now=model.now,
        actor="cancel",
    )
    if outcome.kind is CancellationKind.APPLIED:
        model.cancelled.add(line.key)
        # Cancelled before it was imported: the late order must be skipped.
        model.seen.add(line.key)
        if outcome.returned:
            model.restocked.add(line.key)
        model.write(line.sku, outcome.levels, outcome.entries)


def run_snapshot(model: Model, event: Snapshot) -> None:
    key = (event.source, event.sku)
    as_of = model.now - timedelta(minutes=event.minutes_ago)
    outcome = apply_snapshot(
        model.stock.get(key),
        event.quantity,
        as_of=as_of,
        orders_after=orders_after_for(model, event.source, event.sku),
        sku=event.sku,
        source=event.source,
        actor="snapshot",
        now=model.now,
        counted_as_of=model.counted.get(key),
    )
    if not outcome.stale:
        assert outcome.level is not None
        model.write(event.sku, {event.source: outcome.level}, outcome.entries)
        model.counted[key] = as_of


def new_model() -> Model:
    return Model()


scenario = order_pool().flatmap(
    lambda pool: st.tuples(st.just(pool), events(len(pool)), st.booleans())
)


@FAST
@given(scenario=scenario)
def test_the_ledger_always_sums_to_the_stock(scenario):
    pool, happenings, split = scenario
    model = new_model()
    for event in happenings:
        run(model, pool, event, split)
        assert all(level.quantity >= 0 for level in model.stock.values())
    sums: dict[tuple[str, str], int] = {}
    for entry in model.ledger:
        sums[(entry.source, entry.sku)] = sums.get((entry.source, entry.sku), 0) + entry.delta
    assert {k: v for k, v in sums.items() if v} == {
        k: v.quantity for k, v in model.stock.items() if v.quantity
    }


@FAST
@given(scenario=scenario)
def test_replaying_orders_and_cancellations_changes_nothing(scenario):
    pool, happenings, split = scenario
    model = new_model()
    for event in happenings:
        run(model, pool, event, split)
    before = model.snapshot()
    for event in happenings:
        if isinstance(event, (Order, Cancel)):
            run(model, pool, event, split)
    assert model.snapshot() == before


@FAST
@given(scenario=scenario)
def test_each_order_and_cancellation_is_counted_once(scenario):
    pool, happenings, split = scenario
    model = new_model()
    for event in happenings:
        run(model, pool, event, split)
    ordered = sum(e.delta for e in model.ledger if e.reason is Reason.ORDER)
    returned = sum(e.delta for e in model.ledger if e.reason is Reason.CANCEL)
    taken = {key: alloc for key, (_, alloc) in model.taken.items()}
    assert ordered == -sum(sum(q for _, q in a.taken) for a in taken.values())
    assert returned == sum(sum(q for _, q in taken[key].taken) for key in model.restocked)
    assert len({e.reference for e in model.ledger if e.reason is Reason.ORDER}) <= len(model.seen)


@FAST
@given(scenario=scenario, market_list=st.lists(markets, min_size=1, max_size=3))
def test_no_market_is_ever_sent_more_than_its_sources_hold(scenario, market_list):
    pool, happenings, split = scenario
    model = new_model()
    for event in happenings:
        run(model, pool, event, split)
        for sku in SKUS:
            available = {s: lvl.quantity for s, lvl in model.levels_of(sku).items() if lvl}
            for market in market_list:
                sent = market_quantity(available, market.sources, market.rules)
                counted = SOURCES if market.sources is None else market.sources
                held = sum(available.get(s, 0) for s in counted)
                assert sent <= held


# --- first integration ---------------------------------------------------------

listing_files = st.lists(
    st.tuples(
        st.sampled_from(MARKET_NAMES),
        st.dictionaries(st.sampled_from(SKUS + ["D"]), quantities, max_size=4),
    ),
    min_size=1,
    max_size=6,
)


@FAST
@given(files=listing_files, initial=st.dictionaries(st.sampled_from(SKUS + ["D", "E"]), quantities))
def test_first_integration_wins_whatever_order_markets_and_listing_files_come_in(files, initial):
    # ``files`` arrive in the order drawn: markets interleaved, some with several files.
    mf = {sku: StockLevel(q, START - timedelta(days=1)) for sku, q in initial.items()}
    ledger: list[LedgerEntry] = []
    first_market: str | None = None
    for i, (market, listing) in enumerate(files):
        rows = [ListingRow(sku, q) for sku, q in listing.items()]
        integrated = has_integrated(first_market, market)
        result = import_listings(integrated, rows, mf, START + timedelta(minutes=i))
        assert result.first_integration is (market == files[0][0])
        if result.first_integration:
            first_market = market
        else:
            assert result.entries == () and result.levels == {}
            assert all(s.needs_update for s in result.listings)
        mf.update(result.levels)
        ledger.extend(result.entries)
    expected = dict(initial)
    for market, listing in files:
        if market == files[0][0]:
            expected |= listing
    assert {sku: lvl.quantity for sku, lvl in mf.items()} == expected
    assert all(e.reason is Reason.IMPORT for e in ledger)
