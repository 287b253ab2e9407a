"""Two daemons on one PostgreSQL, as real processes: every file is applied once,
every change and every order file is delivered once, by the leader.

Each daemon has a data_dir (spool, archive) of its own and so a node id of its
own; they share the database, and in some cases a drop folder or a market's
or warehouse's server.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Database
from tests.export.test_destinations import PASSWORD as FTP_PASSWORD
from tests.export.test_destinations import USER as FTP_USER
from tests.export.test_destinations import Server

pytestmark = pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                                     indirect=True)
WAIT = 60.0
RESEND_LIMIT = 2  # each order line goes out in 1 + 2 files, then it is flagged unconfirmed


class Daemon:
    """``stockdrop run`` in a process of its own, with a config of its own."""

    def __init__(self, home: Path, database_url: str, drop_folder: Path | None = None,
                 export_folder: Path | None = None, orders_to: int | None = None) -> None:
        """``export_folder``: the market "shop" is sent its deltas there; ``orders_to``: the
        warehouse wh1 is sent its order files every second, over FTP to that port on 127.0.0.1."""
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        folder = f'drop_folder = "{drop_folder}"\n' if drop_folder else ""
        orders = (f'[merchants.sources.orders_export]\ntransport = "ftp"\nhost = "127.0.0.1"\nport = {orders_to}\n'
                  f'user = "{FTP_USER}"\npassword = "{FTP_PASSWORD}"\nfolder = "out"\nevery_seconds = 1\n'
                  f"resend_limit = {RESEND_LIMIT}\ntimeout_seconds = 10\n" if orders_to else "")
        market = '[[merchants.markets]]\nname = "shop"\n' if export_folder or orders_to else ""
        if export_folder:
            market += f'[merchants.markets.export]\nfolder = "{export_folder}"\ndebounce_seconds = 0.5\n'
        self.config = home / "stockdrop.toml"
        self.config.write_text(
            f'data_dir = "data"\n[database]\nurl = "{database_url}"\n'
            "[ingest]\nsettle_seconds = 0.2\nreconcile_seconds = 1\n"
            '[[merchants]]\nname = "acme"\n[[merchants.sources]]\nname = "wh1"\n' + folder
            + '[merchants.sources.feed]\nmode = "adjust"\nunknown_sku = "create"\n' + orders + market)
        self.inbox = drop_folder or home / "data" / "sources" / "acme" / "wh1" / "inbox"
        self.orders = home / "data" / "markets" / "acme" / "shop" / "orders" / "inbox"
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def start(self) -> Daemon:
        self._ready.clear()
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(self.config), "run",
                                      "--log-format", "json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        assert self._ready.wait(WAIT), "the daemon did not get ready"
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"event": "ready"' in line:
                self._ready.set()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(WAIT) == 0
        self.proc = None

    def drop(self, name: str, body: str, inbox: Path | None = None) -> None:
        """Into the warehouse's inbox, or ``inbox``, under a temporary name first."""
        inbox = inbox or self.inbox
        inbox.mkdir(parents=True, exist_ok=True)
        part = inbox / f"{name}.part"
        part.write_text(body)
        part.rename(inbox / name)


@pytest.fixture
def daemons(database: Database, tmp_path: Path) -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        d.stop()


def _feed(i: int) -> str:
    return f"sku,quantity\nA,{i + 1}\n"  # an adjust feed: A goes up by i + 1


def _uploads(database: Database) -> list[tuple[str, str | None]]:
    with database.engine.connect() as conn:
        return [(s, n) for s, n in conn.execute(text("SELECT status, node FROM uploads ORDER BY id"))]


def _settled(database: Database, count: int) -> list[tuple[str, str | None]]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = _uploads(database)
        if len(rows) >= count and all(s not in ("received", "processing") for s, _ in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"uploads did not settle: {_uploads(database)}")


def _stock(database: Database) -> int | None:
    with database.engine.connect() as conn:
        return conn.execute(text("SELECT quantity FROM stock")).scalar()


def test_the_same_files_sent_to_both_daemons_at_once_are_each_applied_once(
        database: Database, tmp_path: Path, daemons: list[Daemon]) -> None:
    one, two = (Daemon(tmp_path / name, database.url) for name in ("one", "two"))
    daemons += [one.start(), two.start()]
    for i in range(20):
        one.drop(f"f{i:02d}.csv", _feed(i))
        two.drop(f"f{i:02d}.csv", _feed(i))
    rows = _settled(database, 40)
    assert sorted(s for s, _ in rows).count("applied") == 20
    assert sorted(s for s, _ in rows).count("duplicate") == 20
    assert _stock(database) == sum(i + 1 for i in range(20))
    assert len({n for _, n in rows}) == 2  # each daemon recorded itself


def test_distinct_files_split_across_two_daemons_are_all_applied(
        database: Database, tmp_path: Path, daemons: list[Daemon]) -> None:
    one, two = (Daemon(tmp_path / name, database.url) for name in ("one", "two"))
    daemons += [one.start(), two.start()]
    for i in range(20):
        (one if i % 2 else two).drop(f"f{i:02d}.csv", _feed(i))
    rows = _settled(database, 20)
    assert [s for s, _ in rows] == ["applied"] * 20
    assert _stock(database) == sum(i + 1 for i in range(20))


def test_restarting_one_daemon_leaves_the_others_unfinished_uploads_alone(
        database: Database, tmp_path: Path, daemons: list[Daemon]) -> None:
    one, two = (Daemon(tmp_path / name, database.url) for name in ("one", "two"))
    daemons += [one.start(), two.start()]
    with database.engine.connect() as blocker:
        # Hold the source's lock: two's first file waits in "processing", its second in "received".
        blocker.execute(text("SELECT id FROM sources WHERE name = 'wh1' FOR NO KEY UPDATE"))
        two.drop("a.csv", _feed(0))
        deadline = time.monotonic() + WAIT
        while sorted(s for s, _ in _uploads(database)) != ["processing"] and time.monotonic() < deadline:
            time.sleep(0.1)
        two.drop("b.csv", _feed(1))
        while sorted(s for s, _ in _uploads(database)) != ["processing", "received"] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(s for s, _ in _uploads(database)) == ["processing", "received"]
        one.stop()
        one.start()  # its recovery runs at start
        time.sleep(1)
        assert sorted(s for s, _ in _uploads(database)) == ["processing", "received"]
        blocker.rollback()  # two may go on
    rows = _settled(database, 2)
    assert [s for s, _ in rows] == ["applied", "applied"]
    assert _stock(database) == 1 + 2


def test_a_drop_folder_both_daemons_watch_gives_each_file_to_one_of_them(
        database: Database, tmp_path: Path, daemons: list[Daemon]) -> None:
    shared = tmp_path / "shared-inbox"
    shared.mkdir()
    one, two = (Daemon(tmp_path / name, database.url, drop_folder=shared) for name in ("one", "two"))
    daemons += [one.start(), two.start()]
    for i in range(20):
        one.drop(f"f{i:02d}.csv", _feed(i))
    rows = _settled(database, 20)
    time.sleep(2)  # a second claim of a file would show as a 21st upload
    rows = _uploads(database)
    assert [s for s, _ in rows] == ["applied"] * 20, rows
    assert _stock(database) == sum(i + 1 for i in range(20))
    assert not any(shared.iterdir())


def test_every_upload_names_the_daemon_that_holds_it(database: Database, tmp_path: Path,
                                                     daemons: list[Daemon]) -> None:
    one = Daemon(tmp_path / "one", database.url)
    daemons.append(one.start())
    one.drop("f.csv", _feed(0))
    [(status, node)] = _settled(database, 1)
    assert status == "applied" and node is not None and node.endswith(tuple("0123456789abcdef"))
    out = subprocess.run([sys.executable, "-m", "daemon", "-c", str(one.config), "history", "--json"],
                         check=True, capture_output=True, text=True)
    assert json.loads(out.stdout)["uploads"][0]["status"] == "applied"


def _exports(database: Database) -> list[tuple[str, str | None]]:
    with database.engine.connect() as conn:
        return [(s, n) for s, n in conn.execute(text("SELECT status, node FROM exports ORDER BY id"))]


def _wait(predicate, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_daemons_send_each_change_once_and_the_other_takes_over_when_the_leader_stops(
        database: Database, tmp_path: Path, daemons: list[Daemon]) -> None:
    out = tmp_path / "shop-feeds"
    one, two = (Daemon(tmp_path / name, database.url, export_folder=out) for name in ("one", "two"))
    daemons += [one.start(), two.start()]
    two.drop("first.csv", "sku,quantity\nA,5\n")
    _settled(database, 1)
    with database.engine.begin() as conn:  # the market lists A
        conn.execute(text("INSERT INTO listings (market_id, product_id, needs_update, updated_at) "
                          "SELECT m.id, p.id, false, now() FROM markets m, products p"))
        # What the ORM's flush listener does for a listing import (db.listings_version).
        conn.execute(text("UPDATE markets SET listings_version = listings_version + 1"))

    def files() -> list[Path]:
        return sorted(out.glob("*.csv")) if out.is_dir() else []

    _wait(lambda: len(files()) == 1, "the first delta")
    one.drop("second.csv", "sku,quantity\nA,2\n")  # A: 5 + 2
    _wait(lambda: len(files()) == 2, "the second delta")
    time.sleep(2)  # long enough for a second sender to have sent its own copy
    assert len(files()) == 2
    rows = _exports(database)
    assert [s for s, _ in rows] == ["delivered", "delivered"]
    [leader] = {n for _, n in rows}
    assert files()[-1].read_text().splitlines() == ["sku,quantity", "A,7"]

    # The leader stops; the other daemon takes the work over and sends the next change.
    (one if leader == one_node(one) else two).stop()
    (two if leader == one_node(one) else one).drop("third.csv", "sku,quantity\nA,1\n")
    # Delivered is marked after the remote rename, so the file shows a moment before its row does.
    _wait(lambda: len(files()) == 3 and _exports(database)[-1][0] == "delivered", "a delta from the new leader")
    rows = _exports(database)
    assert len(rows) == 3 and rows[-1][1] != leader and rows[-1][0] == "delivered"
    assert files()[-1].read_text().splitlines() == ["sku,quantity", "A,8"]


def one_node(daemon: Daemon) -> str:
    """The node id the daemon records (its default: host and a hash of its data_dir)."""
    from daemon.settings import load_settings

    return load_settings(daemon.config).node


# --- order files to a warehouse


class Warehouse:
    """The warehouse's FTP server (pyftpdlib, port 0), noting every upload it completes:
    a file delivered twice shows as its name twice."""

    def __init__(self, home: Path) -> None:
        self.folder = home / "out"
        self.folder.mkdir(parents=True)
        self.received: list[str] = []
        self.server = Server(home, on_file_received=lambda handler, path: self.received.append(Path(path).name))

    def files(self) -> dict[str, list[tuple[str, str]]]:
        """Each order file in place: its (order_id, line_id) rows."""
        return {p.name: [(r["order_id"], r["line_id"]) for r in csv.DictReader(io.StringIO(p.read_text()))]
                for p in sorted(self.folder.glob("*.csv"))}


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    w = Warehouse(tmp_path / "warehouse-ftp")
    yield w
    w.server.stop()


def _order_exports(database: Database) -> list[tuple[str, str, str | None, int]]:
    with database.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT file_name, status, node, attempts FROM order_exports ORDER BY id"))]


def _fulfilments(database: Database) -> dict[str, tuple[str, int]]:
    with database.engine.connect() as conn:
        return {f"{o}/{ln}": (s, n) for o, ln, s, n in conn.execute(text(
            "SELECT l.order_id, l.line_id, f.status, f.sends FROM fulfilments f "
            "JOIN order_lines l ON l.id = f.order_line_id"))}


def _orders(*lines: str) -> str:
    ordered = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "order_id,line_id,sku,quantity,ordered_at\n" + "".join(f"{line},{ordered}\n" for line in lines)


def test_two_daemons_send_each_order_file_once_on_the_leaders_schedule_and_the_other_takes_over(
        database: Database, tmp_path: Path, warehouse: Warehouse, daemons: list[Daemon]) -> None:
    # (warehouse before daemons: the daemons stop before their server does)
    one, two = (Daemon(tmp_path / name, database.url, orders_to=warehouse.server.port) for name in ("one", "two"))
    daemons += [one.start(), two.start()]
    two.drop("stock.csv", "sku,quantity\nA,10\nB,10\n")  # wh1 holds them: the orders are its to ship
    _settled(database, 1)
    # Orders on the market "shop", one file through each daemon.
    one.drop("o1.csv", _orders("W-1,1,A,2", "W-1,2,B,1"), inbox=one.orders)
    two.drop("o2.csv", _orders("W-2,1,A,1"), inbox=two.orders)
    lines = ["W-1/1", "W-1/2", "W-2/1"]
    # Both schedules fire every second; each line goes out 1 + resend_limit times, then is flagged.
    _wait(lambda: sorted(_fulfilments(database)) == lines
          and all(s == "unconfirmed" for s, _ in _fulfilments(database).values()), "the lines flagged unconfirmed")
    time.sleep(2)  # long enough for a second sender's schedule to have fired twice
    rows = _order_exports(database)
    assert rows and all(status == "delivered" for _, status, _, _ in rows), rows
    nodes = {node for _, _, node, _ in rows}
    assert len(nodes) == 1, rows  # every run on one daemon
    [leader] = nodes
    files = warehouse.files()
    # Each file delivered once: one upload per order file, none of them twice.
    assert sorted(warehouse.received) == sorted(f"{name}.part" for name, *_ in rows)
    assert sorted(files) == sorted(name for name, *_ in rows)
    # Each file carries a line at most once, and each line was sent exactly 1 + resend_limit times.
    for name, body in files.items():
        assert len(body) == len(set(body)), (name, body)
    sent = [f"{o}/{ln}" for body in files.values() for o, ln in body]
    assert {line: sent.count(line) for line in lines} == {line: 1 + RESEND_LIMIT for line in lines}
    assert _fulfilments(database) == {line: ("unconfirmed", 1 + RESEND_LIMIT) for line in lines}

    # The leader stops; the other daemon's schedule takes the warehouse over.
    stays = two if leader == one_node(one) else one
    (one if stays is two else two).stop()
    stays.drop("o3.csv", _orders("W-3,1,B,1"), inbox=stays.orders)
    _wait(lambda: _fulfilments(database).get("W-3/1", ("", 0))[1] >= 1, "W-3 sent by the new leader")
    rows = _order_exports(database)
    new = [r for r in rows if r[2] != leader]
    assert new and all(node == one_node(stays) and status == "delivered" for _, status, node, _ in new), rows
    assert warehouse.files()[new[0][0]] == [("W-3", "1")]
    assert len(warehouse.received) == len(set(warehouse.received))
