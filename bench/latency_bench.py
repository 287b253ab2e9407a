"""From a sale on one market to the other markets' files: the latency figure.

    python -m bench latency [--orders 50] [--via ftp,folder] [--pause 1] [--pg] [--pg-url URL]

The daemon runs as production runs it: ``stockdrop run`` in a process of
its own, from a generated config, on SQLite (``--pg``: a schema of its own on
the PostgreSQL at ``--pg-url``). A subprocess rather than the runtime
assembled in this process: the daemon then has an interpreter (a GIL) of its
own, as on a real box, and is not slowed by the markets' servers and the
polling that run here; it starts, logs and stops as it does under systemd.

The world: one merchant, one warehouse with 1,000 units of each of a few
hundred SKUs, each listed on three markets with ``debounce_seconds = 1``
(everything else as the config's defaults, ``settle_seconds`` too):

- ``amazon`` sells: its order files (Amazon order reports, tab-delimited)
  arrive in its orders inbox; its own delta goes to a local folder;
- ``ebay`` is sent ``ebay_revise`` files over FTP (a pyftpdlib server here,
  on port 0), with a buffer of 2;
- ``shop`` is sent generic CSV over SFTP (a paramiko server here, port 0,
  its host key pinned by fingerprint).

Each order is one line of one unit of a SKU not sold before, sent when the
previous order's files have arrived and a random pause of 0 to ``--pause``
seconds (seeded) has passed: back to back, the orders would fall in step
with the exporter's 1 s poll and the watcher's 0.2 s tick, and show one
phase of them rather than their spread. The clock starts when the order file
lands: for ``--via folder`` the rename of ``NAME.part`` to ``NAME`` in the
watched inbox, for ``ftp``/``sftp`` the start of the upload to the daemon's
own FTP/SFTP listener (logged in before). It stops when both other markets'
folders hold a new file carrying that SKU at its new quantity (after the
market's rules), found by listing the folders every 10 ms. The figure is the
later of the two, p50/p95/max over ``--orders`` orders; target p95 at most
5 s. Below it, where the time went, from the upload and export rows the daemon
wrote (its clock and this one are the machine's).

The baseline, in the same run: the bare delivery of a file of the same size
to the same two servers, with the daemon's own transports (connect, log in,
upload under ``.part``, check the size, rename), between orders. The floor
the daemon can reach is ``debounce_seconds`` plus the slower of the two.
Nothing here asserts on time; the checks are on what arrived.
"""

from __future__ import annotations

import argparse
import csv
import ftplib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import paramiko
from sqlalchemy import create_engine, select, text

from bench.exports_bench import _pg_problem
from bench.receivers_bench import PASSWORD as FTP_PASSWORD
from bench.receivers_bench import USER as FTP_USER
from bench.receivers_bench import bare_ftp, pct
from daemon.auth.hostkey import fingerprint, load_or_create_host_key
from daemon.auth.passwords import hash_password
from daemon.db import migrate
from daemon.db.accounts import add_account
from daemon.db.catalog import get_or_create_product, get_source
from daemon.db.engine import make_engine, session_factory
from daemon.db.markets import get_market
from daemon.db.models import ExportRecord, Listing, Upload
from daemon.db.stock import set_one
from daemon.db.sync import sync_with_config
from daemon.inventory.stock import Reason
from daemon.settings import load_settings
from daemon.transports.destination import PART_SUFFIX, Destination
from daemon.transports.ftp import FtpDestination
from daemon.transports.sftp import SftpDestination, SftpEndpoint
from tests.remote_sftp import OpenServer

TARGET = 5.0
DEBOUNCE = 1.0
MERCHANT, SOURCE = "bench", "wh"
SELLER, BY_FTP, BY_SFTP = "amazon", "ebay", "shop"
STOCK, EBAY_BUFFER = 1_000, 2
ORDER_USER, ORDER_PASSWORD = "amazon-orders", "bench-orders-pass"
SFTP_USER, SFTP_PASSWORD = "market", "bench-sftp-pass"
WAIT = 60.0  # an order's files not there by then: the run is broken, not slow
AMAZON_HEADER = ("order-id\torder-item-id\tpurchase-date\tpayments-date\tbuyer-email\tbuyer-name\tsku\t"
                 "product-name\tquantity-purchased\tcurrency\titem-price\tship-service-level\tship-city\t"
                 "ship-country\n")


def _config(url: str, ftp_port: int, sftp: OpenServer) -> str:
    return f"""\
data_dir = "data"

[database]
url = "{url}"

[listeners.ftp]
enabled = true
host = "127.0.0.1"
port = 0

[listeners.sftp]
enabled = true
host = "127.0.0.1"
port = 0

[[merchants]]
name = "{MERCHANT}"

[[merchants.sources]]
name = "{SOURCE}"

[[merchants.markets]]
name = "{SELLER}"
kind = "amazon"

[merchants.markets.export]
folder = "out/{SELLER}"
format = "amazon_price_quantity"
debounce_seconds = {DEBOUNCE}

[[merchants.markets]]
name = "{BY_FTP}"
kind = "ebay"
buffer = {EBAY_BUFFER}

[merchants.markets.export]
transport = "ftp"
host = "127.0.0.1"
port = {ftp_port}
user = "{FTP_USER}"
password = "{FTP_PASSWORD}"
folder = "/inbound"
format = "ebay_revise"
debounce_seconds = {DEBOUNCE}

[[merchants.markets]]
name = "{BY_SFTP}"
kind = "generic"

[merchants.markets.export]
transport = "sftp"
host = "127.0.0.1"
port = {sftp.port}
user = "{SFTP_USER}"
password = "{SFTP_PASSWORD}"
host_key_fingerprint = "{fingerprint(sftp.key)}"
folder = "/inbound"
format = "csv"
debounce_seconds = {DEBOUNCE}
"""


def _sku(i: int) -> str:
    return f"SKU-{i:05d}"


def seed(config: Path, skus: int) -> None:
    """Migrate, record the config's merchant and markets, then stock, listings and the orders login."""
    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        with session_factory(engine)() as session, session.begin():
            sync_with_config(session, settings, now)
            source = get_source(session, MERCHANT, SOURCE)
            markets = [get_market(session, MERCHANT, name) for name in (SELLER, BY_FTP, BY_SFTP)]
            for i in range(skus):
                set_one(session, source, _sku(i), STOCK, actor="bench", now=now, reason=Reason.IMPORT)
                product = get_or_create_product(session, source.merchant_id, _sku(i), now)
                session.add_all(Listing(market_id=m.id, product_id=product.id, updated_at=now) for m in markets)
            add_account(session, None, ORDER_USER, hash_password(ORDER_PASSWORD), now, market=markets[0],
                        kind="orders")
    finally:
        engine.dispose()


class Daemon:
    """``stockdrop run`` with the JSON log read on a thread: the ports it listens on, and its errors."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(config), "run",
                                      "--log-format", "json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.events: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(WAIT) or self.proc.poll() is not None:
            self.stop()
            raise SystemExit(f"the daemon did not get ready: {self.problems[-5:]}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                self.problems.append(line.rstrip())
                continue
            self.events.setdefault(event.get("event", ""), event)
            if event.get("level") in ("warning", "error", "critical"):  # counted by kind, without the time
                self.problems.append(f"{event.get('level')} {event.get('logger', '')}: {event.get('event')}")
            if event.get("event") == "ready":
                self._ready.set()
        self._ready.set()  # it ended: nobody waits for "ready" in vain

    def port(self, event: str) -> int:
        return int(self.events[event]["port"])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(WAIT)
        self._reader.join(5)
        return code


@dataclass
class Market:
    name: str
    folder: Path  # the market server's folder, as that server's disk holds it
    sku_column: int
    quantity_column: int
    expect: Callable[[int], int]  # quantity left in the warehouse -> what the market is sent
    delimiter: str = ","
    seen: set[str] = field(default_factory=set)

    def files(self) -> list[str]:
        return [n for n in os.listdir(self.folder) if not n.endswith(PART_SUFFIX) and n not in self.seen]

    def rows(self, name: str) -> dict[str, int]:
        text = (self.folder / name).read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text), delimiter=self.delimiter))[1:]
        return {r[self.sku_column]: int(r[self.quantity_column]) for r in rows}


def wait_for_file(market: Market, deadline: float) -> tuple[float, str]:
    """(monotonic time it was seen, its name): the market's next file, whatever it holds."""
    while time.monotonic() < deadline:
        new = market.files()
        if new:
            seen = time.monotonic()
            market.seen.update(new)
            if len(new) > 1:
                raise SystemExit(f"{market.name}: {len(new)} new files at once, one delta expected: {new}")
            return seen, new[0]
        time.sleep(0.01)
    raise SystemExit(f"{market.name}: no new file within {WAIT:g}s")


# --- how an order file lands


def _order_file(i: int, sku: str) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return (AMAZON_HEADER + f"111-{i:07d}-0000001\t{50_000_000 + i}\t{stamp}\t{stamp}\tb{i}@example.com\t"
            f"Buyer {i}\t{sku}\tItem {sku}\t1\tUSD\t9.99\tStandard\tSeattle\tUS\n").encode()


Land = Callable[[str, bytes], float]  # (name, bytes) -> monotonic time it landed


def ftp_client(port: int) -> Land:
    def land(name: str, data: bytes) -> float:
        with ftplib.FTP() as ftp:  # a market's uploader connects for each file
            ftp.connect("127.0.0.1", port, timeout=30)
            ftp.login(ORDER_USER, ORDER_PASSWORD)  # bcrypt: before the clock starts
            t0 = time.monotonic()
            ftp.storbinary(f"STOR inbox/{name}", io.BytesIO(data))
        return t0

    return land


def sftp_client(port: int) -> Land:
    def land(name: str, data: bytes) -> float:
        # Our own daemon on loopback: its host key is not what is measured, so it is not pinned.
        with paramiko.Transport(("127.0.0.1", port)) as transport:
            transport.connect(username=ORDER_USER, password=ORDER_PASSWORD)
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            t0 = time.monotonic()
            sftp.putfo(io.BytesIO(data), f"/inbox/{name}", confirm=False)
            sftp.close()
        return t0

    return land


def folder_client(inbox: Path) -> Land:
    def land(name: str, data: bytes) -> float:
        part = inbox / f"{name}.part"
        part.write_bytes(data)
        t0 = time.monotonic()
        part.rename(inbox / name)
        return t0

    return land


# --- the run


@dataclass
class Order:
    via: str
    name: str
    landed_wall: float  # time.time() when it landed, to set beside the daemon's rows
    seconds: dict[str, float]  # market -> landing to its file seen
    files: dict[str, str]  # market -> the file's name


def run_orders(via: str, land: Land, first: int, count: int, markets: list[Market],
               seller: Market, bare: list[Destination], bare_times: dict[str, list[float]],
               pause: Callable[[], float]) -> list[Order]:
    orders: list[Order] = []
    for i in range(first, first + count):
        time.sleep(pause())
        sku, name = _sku(i), f"order-{via}-{i:05d}.txt"
        data = _order_file(i, sku)
        wall_offset = time.time() - time.monotonic()
        t0 = land(name, data)
        deadline = t0 + WAIT
        seconds, files = {}, {}
        for market in markets:
            seen, file = wait_for_file(market, deadline)
            if market.rows(file) != {sku: market.expect(STOCK - 1)}:
                raise SystemExit(f"{market.name}: {file} holds {market.rows(file)}, expected "
                                 f"{ {sku: market.expect(STOCK - 1)} }")
            seconds[market.name], files[market.name] = seen - t0, file
        # The market that sold gets its delta too (not timed: a local folder).
        _, file = wait_for_file(seller, deadline)
        if seller.rows(file) != {sku: STOCK - 1}:
            raise SystemExit(f"{seller.name}: {file} holds {seller.rows(file)}")
        orders.append(Order(via, name, t0 + wall_offset, seconds, files))
        # The baseline, between orders: the same size of file over the same transports.
        size = (markets[0].folder / files[markets[0].name]).stat().st_size
        for destination, market in zip(bare, markets, strict=True):
            began = time.monotonic()
            destination.deliver(f"bare-{i:05d}.csv", os.urandom(size))
            bare_times[market.name].append(time.monotonic() - began)
    return orders


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}s {pct(values, 95):6.2f}s {max(values):6.2f}s"


def _stages(config: Path, orders: list[Order], markets: list[Market]) -> list[tuple[str, list[float]]]:
    """Where the time went, per order, from the daemon's upload and export rows."""
    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            uploads = {u.original_name: u for u in session.scalars(select(Upload).where(Upload.kind == "orders"))}
            exports = {e.file_name: e for e in session.scalars(select(ExportRecord))}
    finally:
        engine.dispose()
    stages: dict[str, list[float]] = {}

    def add(label: str, value: float) -> None:
        stages.setdefault(label, []).append(value)

    for order in orders:
        upload = uploads[order.name]
        if upload.status != "applied" or upload.finished_at is None:
            raise SystemExit(f"{order.name}: {upload.status}")
        received, applied = upload.received_at.timestamp(), upload.finished_at.timestamp()
        started = upload.started_at.timestamp() if upload.started_at else received
        add("landed -> received (its row's received_at: first seen, or the transfer's end)",
            received - order.landed_wall)
        add("received -> processing (folder: settle_seconds; the claim, a worker free)", started - received)
        add("processing -> applied (parsed in a worker, applied, committed)", applied - started)
        for market in markets:
            export = exports[order.files[market.name]]
            assert export.delivered_at is not None and export.trigger == "change", export
            add(f"applied -> {market.name}'s delta composed (the exporter's poll + debounce {DEBOUNCE:g}s)",
                export.created_at.timestamp() - applied)
            add(f"composed -> {market.name}'s delivery recorded (connect, upload, rename, commit)",
                export.delivered_at.timestamp() - export.created_at.timestamp())
            add(f"recorded -> seen here ({market.name})",
                order.landed_wall + order.seconds[market.name] - export.delivered_at.timestamp())
    return list(stages.items())


def report(via: str, label: str, orders: list[Order], markets: list[Market], config: Path) -> bool:
    both = [max(o.seconds.values()) for o in orders]
    p95 = pct(both, 95)
    met = p95 <= TARGET
    print(f"{label}, order files via {via}, {len(orders)} orders:{'':14s} p50     p95     max")
    print(f"  both other markets' files in place {'':14s}{_spread(both)}   (target p95 <= {TARGET:g}s)  "
          f"{'MET' if met else 'MISSED'}")
    for market in markets:
        print(f"  {market.name:6s} alone {'':33s}{_spread([o.seconds[market.name] for o in orders])}")
    print("  where the time went (from the daemon's rows):")
    for stage, values in _stages(config, orders, markets):
        print(f"    {stage:74s} {_spread(values)}")
    return met


def bare_report(bare_times: dict[str, list[float]]) -> None:
    print("baseline, the same size of file delivered by the same transports with no daemon "
          "(connect, log in, .part, size, rename):")
    for name, values in bare_times.items():
        print(f"  to {name:6s}{'':41s}{_spread(values)}")
    floor = DEBOUNCE + max(statistics.median(v) for v in bare_times.values())
    print(f"  the floor: debounce_seconds {DEBOUNCE:g}s + the slower median delivery = {floor:.2f}s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench latency")
    parser.add_argument("--orders", type=int, default=50, help="orders per way in")
    parser.add_argument("--via", default="ftp,folder",
                        help="how the order files land, comma-separated: ftp, sftp, folder (the watched inbox)")
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--pause", type=float, default=1.0,
                        help="a random pause of 0 to this many seconds before each order (0: back to back)")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--pg-url", default=os.environ.get(
        "STOCKDROP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    vias = [v.strip() for v in args.via.split(",") if v.strip()]
    if unknown := [v for v in vias if v not in ("ftp", "sftp", "folder")]:
        parser.error(f"--via: unknown {unknown} (ftp, sftp, folder)")
    if args.orders * len(vias) > args.skus:
        parser.error("--skus must be at least --orders times the ways in: each order sells a SKU of its own")
    tmp = Path(tempfile.mkdtemp(prefix="stockdrop-bench-latency-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if args.pg:
            problem = _pg_problem(args.pg_url)
            if problem is not None:
                print(f"# PostgreSQL not reachable at {args.pg_url} ({problem})")
                return 1
            url, label = stack.enter_context(_pg_schema(args.pg_url)), "PostgreSQL"
        else:
            url, label = f"sqlite:///{tmp / 'data' / 'stockdrop.db'}", "SQLite"
        return _run(stack, tmp, url, label, vias, args)
    return 1  # not reached: the with block returns


def _run(stack: ExitStack, tmp: Path, url: str, label: str, vias: list[str], args: argparse.Namespace) -> int:
    ftp_home, sftp_root = tmp / "ebay-ftp", tmp / "shop-sftp"
    for folder in (ftp_home / "inbound", ftp_home / "bare", sftp_root / "inbound", sftp_root / "bare",
                   tmp / "out" / SELLER):
        folder.mkdir(parents=True)
    _host, ftp_port = stack.enter_context(bare_ftp(ftp_home))
    sftp = OpenServer(sftp_root, load_or_create_host_key(tmp / "sftp-host-key"), user=SFTP_USER,
                      password=SFTP_PASSWORD)
    sftp.serve()
    stack.callback(sftp.close)
    config = tmp / "stockdrop.toml"
    config.write_text(_config(url, ftp_port, sftp))
    (tmp / "data").mkdir(exist_ok=True)
    seed(config, args.skus)
    print(f"# latency: an order file on {SELLER} -> the deltas renamed into place on {BY_FTP} (FTP) and "
          f"{BY_SFTP} (SFTP); {label}, debounce_seconds {DEBOUNCE:g}, other settings the defaults; in {tmp}")
    print(f"# machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    daemon = Daemon(config)
    try:
        markets = [Market(BY_FTP, ftp_home / "inbound", 1, 2, lambda q: max(0, q - EBAY_BUFFER)),
                   Market(BY_SFTP, sftp_root / "inbound", 0, 1, lambda q: q)]
        seller = Market(SELLER, tmp / "out" / SELLER, 0, 2, lambda q: q, delimiter="\t")
        # At start each market is sent every listing: wait for those first files.
        deadline = time.monotonic() + WAIT
        for market in (*markets, seller):
            wait_for_file(market, deadline)
        bare: list[Destination] = [
            FtpDestination(host="127.0.0.1", port=ftp_port, user=FTP_USER, password=FTP_PASSWORD, folder="/bare"),
            SftpDestination(SftpEndpoint(host="127.0.0.1", port=sftp.port, user=SFTP_USER, password=SFTP_PASSWORD,
                                         host_key_fingerprint=fingerprint(sftp.key)), folder="/bare")]
        bare_times: dict[str, list[float]] = {m.name: [] for m in markets}
        inbox = tmp / "data" / "markets" / MERCHANT / SELLER / "orders" / "inbox"
        clients = {"ftp": lambda: ftp_client(daemon.port("ftp_listening")),
                   "sftp": lambda: sftp_client(daemon.port("sftp_listening")),
                   "folder": lambda: folder_client(inbox)}
        results: list[tuple[str, list[Order]]] = []
        rng = random.Random(13)
        for n, via in enumerate(vias):
            results.append((via, run_orders(via, clients[via](), n * args.orders, args.orders, markets, seller,
                                            bare, bare_times, partial(rng.uniform, 0, args.pause))))
    finally:
        code = daemon.stop()
    if code != 0:
        print(f"# the daemon exited with {code}: {daemon.problems[-5:]}")
        return 1
    for line, count in Counter(daemon.problems).most_common(5):
        print(f"# the daemon logged {count}x: {line}")
    missed = [not report(via, label, orders, markets, config) for via, orders in results]
    bare_report(bare_times)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if any(missed) else 0


@contextmanager
def _pg_schema(pg_url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
