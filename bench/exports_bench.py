"""Export figures, each against a baseline measured in the same run.

    python -m bench exports [--rows 1000000] [--repeat 3] [--no-pg]

The world: one merchant, one warehouse source (beside the merchant-fulfilled
one every merchant has, empty here), one market (generic csv, no channel
rules, exported to a local folder), N products each with a stock row in the
warehouse and a listing in the market. It is loaded with a few INSERT ...
SELECT (products, stock, listings), not through the ORM. The products' ids
are in an order unrelated to their SKUs, as after a few loads; the listings'
ids follow the SKUs, as a listing import of a file sorted by SKU gives them.
On SQLite in a temp dir, and on PostgreSQL too when one answers at
``STOCKDROP_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
in a schema of its own dropped after; its tables are vacuumed and analysed
after the load, as autovacuum would have done within the minute. ``--no-pg``
skips it.

1. A full feed of the N listings computed and written: the exporter's kept
   lines brought up to date (``db.market_lines.LinesCache``, read whole once
   before, as the exporter does when it starts; that read is shown beside)
   + ``plan.select_lines`` + the generic ``csv`` writer (what ``outbox.compose``
   does, minus the outbox row), against polars ``DataFrame.write_csv`` of the
   same (sku, quantity) rows. The baseline is that serialisation alone, of a
   frame already in memory, into a buffer: it reads nothing from the database
   and applies no rules and no formula escape. Target at most 2x. Beside it,
   ``Exporter.export_now(key, "full")`` end to end to a local folder (compose
   with the outbox row, deliver with fsync and rename, mark delivered: every
   listing's last_sent advanced), with its ratio to the same baseline.
2. A delta after one sale in the N-listing catalogue whose full feed was
   delivered before (so every listing's last_sent equals its quantity): one
   SKU's stock changed with ``set_one`` (not counted), then
   ``Exporter.export_now(key, "delta")`` end to end (compose, write, deliver to
   the folder, record), from the kept lines. Target at most 0.5 s.
   ``market_lines`` reading the market whole beside it.
3. The other formats' writers on the same N lines, as ratios to write_csv,
   for information.

Each figure is the best of ``--repeat`` runs, interleaved with its baseline's
runs so a slow spell of the machine hits both alike. Nothing here asserts on
time; the checks are on what was sent.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import polars as pl
import structlog
from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import migrate
from daemon.db.catalog import get_source
from daemon.db.engine import driver_connection, make_engine, session_factory
from daemon.db.market_lines import market_lines
from daemon.db.markets import get_market
from daemon.db.models import ExportRecord
from daemon.db.stock import set_one
from daemon.db.sync import sync_with_config
from daemon.db.types import UTCDateTime, UTCMicros
from daemon.export import plan
from daemon.export.formats import FORMATS
from daemon.export.service import Exporter, ExportTarget
from daemon.settings import Settings, parse_settings

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
MERCHANT, SOURCE, MARKET = "bench", "wh", "shop"
OTHER_WRITERS = ("amazon_price_quantity", "ebay_revise", "walmart_json")
FULL_TARGET, DELTA_TARGET = 2.0, 0.5
T = TypeVar("T")


@dataclass
class World:
    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    exporter: Exporter
    folder: Path

    @property
    def key(self) -> str:
        return f"{MERCHANT}/{MARKET}"


def _settings(url: str, tmp: Path) -> Settings:
    raw = {
        "database": {"url": url},
        "data_dir": str(tmp / "data"),
        "merchants": [{
            "name": MERCHANT,
            "sources": [{"name": SOURCE}],
            "markets": [{"name": MARKET, "kind": "generic",
                         # No schedules: export_now alone sends, when the bench says.
                         "export": {"folder": str(tmp / "out"), "format": "csv", "debounce_seconds": 0,
                                    "delta_every_seconds": None, "full_every_seconds": None}}],
        }],
    }
    return parse_settings(raw, base=tmp)


def _step(rows: int) -> int:
    """A multiplier coprime with ``rows``: i -> i * step % rows numbers the SKUs in a shuffled order."""
    step = 7919
    while math.gcd(step, rows) != 1:
        step += 2
    return step


def load(session: Session, rows: int) -> None:
    """N products, a stock row each in the source (0..499 units), a listing each in the market."""
    merchant_id = get_source(session, MERCHANT, SOURCE).merchant_id
    source_id = get_source(session, MERCHANT, SOURCE).id
    market_id = get_market(session, MERCHANT, MARKET).id
    values = {"m": merchant_id, "s": source_id, "k": market_id, "rows": rows, "step": _step(rows)}
    micros, stamp = bindparam("now", NOW, type_=UTCMicros()), bindparam("stamp", NOW, type_=UTCDateTime())
    if session.get_bind().dialect.name == "sqlite":
        products = ("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :rows) "
                    "INSERT INTO products (merchant_id, sku, created_at) "
                    "SELECT :m, printf('SKU-%08d', i * :step % :rows), :now FROM n")
    else:
        products = ("INSERT INTO products (merchant_id, sku, created_at) "
                    "SELECT :m, 'SKU-' || lpad(mod(i::bigint * :step, :rows)::text, 8, '0'), :now "
                    "FROM generate_series(0, CAST(:rows AS integer) - 1) AS i")
    session.execute(text(products).bindparams(micros), values)
    session.execute(text("INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
                         "SELECT :s, id, id * 37 % 500, NULL, :now FROM products WHERE merchant_id = :m")
                    .bindparams(micros), values)
    session.execute(text("INSERT INTO listings (market_id, product_id, needs_update, updated_at) "
                         "SELECT :k, id, false, :stamp FROM products WHERE merchant_id = :m ORDER BY sku")
                    .bindparams(stamp), values)


def make_world(url: str, tmp: Path, rows: int) -> World:
    engine = make_engine(url)
    migrate.upgrade(engine)
    settings = _settings(url, tmp)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        sync_with_config(s, settings, NOW)
    with sessions() as s, s.begin():
        load(s, rows)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("products", "stock", "listings"):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    target = next(ExportTarget(m, k, e) for m, k, e in settings.export_targets() if k == MARKET)
    exporter = Exporter(sessions, [target], sleep=lambda seconds: None)
    return World(engine, sessions, settings, exporter, tmp / "out")


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _write_csv(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_csv(buf)
    return buf.getvalue()


def _read_and_write_csv(world: World) -> bytes:
    """For reference: the same (sku, quantity) pairs by the simplest query that gives them here
    (products joined to the one source's stock, by SKU), fetched with the same driver, + write_csv."""
    with world.sessions() as s:
        source_id = get_source(s, MERCHANT, SOURCE).id
        merchant_id = get_source(s, MERCHANT, SOURCE).merchant_id
        ph = "?" if s.get_bind().dialect.name == "sqlite" else "%s"
        cur = driver_connection(s).cursor()
        try:
            cur.execute("SELECT p.sku, s.quantity FROM products p JOIN stock s ON s.product_id = p.id "
                        f"WHERE p.merchant_id = {ph} AND s.source_id = {ph} ORDER BY p.sku", (merchant_id, source_id))
            schema = {"sku": pl.Utf8(), "quantity": pl.Int64()}
            parts = [pl.DataFrame(rows, orient="row", schema=schema)
                     for rows in iter(lambda: cur.fetchmany(100_000), [])]
        finally:
            cur.close()
    return _write_csv(pl.concat(parts))


def _best(values: list[float]) -> str:
    return f"{min(values):.3f}s" + (f" (runs {min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")


def _verdict(value: float, target: float) -> str:
    return "MET" if value <= target else "MISSED"


def run_backend(label: str, world: World, rows: int, repeat: int) -> None:
    settings = world.exporter.targets[world.key].settings
    csv_writer = FORMATS["csv"]
    with world.sessions() as s:
        frame = market_lines(s, get_market(s, MERCHANT, MARKET)).select("sku", "quantity")
    assert frame.height == rows, frame.height

    # 1. The full feed: computed and written, then export_now end to end. The
    # exporter computes from the lines it keeps (db.market_lines.LinesCache),
    # read whole once when it starts: that first read is shown beside.
    cache = world.exporter.lines
    with world.sessions() as s, s.begin():
        first_read, _ = _timed(partial(cache.market_lines, s, get_market(s, MERCHANT, MARKET)))
    bases, reads, computes, lines_only, writes, fulls, wholes = [], [], [], [], [], [], []
    for _ in range(repeat):
        bases.append(_timed(partial(_write_csv, frame))[0])
        seconds, reference = _timed(partial(_read_and_write_csv, world))
        reads.append(seconds)
        with world.sessions() as s, s.begin():
            market = get_market(s, MERCHANT, MARKET)
            t0 = time.perf_counter()
            lines = cache.market_lines(s, market)
            t1 = time.perf_counter()
            content = csv_writer.write(plan.select_lines(lines, "full").select("sku", "quantity"), settings.options)
            t2 = time.perf_counter()
            seconds, whole = _timed(partial(market_lines, s, market))
            wholes.append(seconds)
        assert lines.equals(whole), "the kept lines differ from the market read whole"
        computes.append(t2 - t0)
        lines_only.append(t1 - t0)
        writes.append(t2 - t1)
        assert content == reference, "the reference query does not give the feed's rows"
        seconds, sent = _timed(partial(world.exporter.export_now, world.key, "full"))
        assert [x.status for x in sent] == ["delivered"], sent
        assert (world.folder / sent[0].file_name).stat().st_size == len(content)
        fulls.append(seconds)
    base, compute, full = min(bases), min(computes), min(fulls)
    print(f"{label} full feed of {rows:,} listings, computed + written (the exporter's kept lines brought up to "
          f"date + select_lines + csv writer): "
          f"{_best(computes)}  baseline {_best(bases)}  ratio {compute / base:.1f}  (target <= {FULL_TARGET:g})  "
          f"{_verdict(compute / base, FULL_TARGET)}")
    print("  the baseline: polars DataFrame.write_csv of the same (sku, quantity) rows, already in memory, into a "
          "buffer; no query, no rules, no formula escape")
    print(f"  of which the kept lines {_best(lines_only)}, select_lines + csv writer {_best(writes)}")
    print(f"  the market read whole instead (market_lines: what the exporter does once when it starts, and after "
          f"a change of a tenth of the listings or more): {_best(wholes)}; the first read here {first_read:.3f}s")
    print(f"  for reference, the same pairs read by the simplest query (products JOIN the source's stock ORDER BY "
          f"sku) with the same driver + write_csv: {_best(reads)}, ratio {compute / min(reads):.1f}")
    print(f"  Exporter.export_now(full) to a local folder, end to end (compose, outbox row, write + fsync + rename, "
          f"mark {rows:,} listings delivered): {_best(fulls)}, ratio {full / base:.1f}; the first run advances "
          f"last_sent from none, the later ones rewrite it unchanged")

    # 2. A delta after one sale, every other listing's last_sent equal to its quantity.
    deltas, alone = [], []
    for i in range(repeat):
        sku = f"SKU-{(i * 104_729) % rows:08d}"
        with world.sessions() as s, s.begin():
            set_one(s, get_source(s, MERCHANT, SOURCE), sku, 1_000 + i, actor="bench", now=NOW)
        seconds, sent = _timed(partial(world.exporter.export_now, world.key, "delta"))
        assert [x.status for x in sent] == ["delivered"], sent
        delivered = (world.folder / sent[0].file_name).read_bytes()
        assert delivered == f"sku,quantity\n{sku},{1_000 + i}\n".encode(), delivered
        deltas.append(seconds)
        with world.sessions() as s:
            market = get_market(s, MERCHANT, MARKET)
            alone.append(_timed(partial(market_lines, s, market))[0])
    assert cache.whole_reads == 1, f"the market was read whole {cache.whole_reads} times"
    with world.sessions() as s:
        record = s.get(ExportRecord, sent[0].export_id)
        assert record is not None and record.line_count == 1
    delta = min(deltas)
    print(f"{label} delta after one sale, {rows:,} listings, Exporter.export_now(delta) end to end: {_best(deltas)}  "
          f"(target <= {DELTA_TARGET:g}s)  {_verdict(delta, DELTA_TARGET)}")
    print(f"  for comparison, market_lines reading the market whole (what a delta cost before the kept lines): "
          f"{_best(alone)}")

    # 3. The other writers on the same lines, for information.
    times: dict[str, list[float]] = {name: [] for name in ("write_csv", "csv", *OTHER_WRITERS)}
    for _ in range(repeat):
        times["write_csv"].append(_timed(partial(_write_csv, frame))[0])
        for name in ("csv", *OTHER_WRITERS):
            times[name].append(_timed(partial(FORMATS[name].write, frame, {}))[0])
    base = min(times["write_csv"])
    print(f"{label} writers on the {rows:,} lines, against polars write_csv {_best(times['write_csv'])} "
          f"(for information):")
    for name in ("csv", *OTHER_WRITERS):
        print(f"  {name:22s} {_best(times[name])}  ratio {min(times[name]) / base:.1f}")


def _pg_problem(url: str) -> str | None:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench exports")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (best counts)")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--pg-url", default=os.environ.get(
        "STOCKDROP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    # The exporter's info lines (one per delivery) would interleave with the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp(prefix="stockdrop-bench-exports-"))
    print(f"# exports benchmark, {args.rows:,} listings, best of {args.repeat} runs each, in {tmp}")
    try:
        (tmp / "sqlite").mkdir()
        world = make_world(f"sqlite:///{tmp / 'sqlite' / 'stockdrop.db'}", tmp / "sqlite", args.rows)
        try:
            run_backend("SQLite:", world, args.rows, args.repeat)
        finally:
            world.engine.dispose()
        if args.no_pg:
            return 0
        problem = _pg_problem(args.pg_url)
        if problem is not None:
            print(f"# PostgreSQL not reachable at {args.pg_url} ({problem}): skipped")
            return 0
        _run_pg(args, tmp / "pg")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_pg(args: argparse.Namespace, tmp: Path) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        tmp.mkdir()
        world = make_world(f"{args.pg_url}?options=-csearch_path%3D{schema}", tmp, args.rows)
        try:
            run_backend("PostgreSQL:", world, args.rows, args.repeat)
        finally:
            world.engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
