"""The running daemon sends its markets their quantities: at start, and after a sale, within seconds."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

from daemon import exitcodes


def feeds(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.csv")) + sorted(folder.glob("*.txt")) if folder.is_dir() else []


def wait_for(predicate, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def amazon_rows(path: Path) -> dict[str, int]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
    return {sku: int(quantity) for sku, _price, quantity in rows[1:]}


def webshop_rows(path: Path) -> dict[str, int]:
    return {r["sku"]: int(r["quantity"]) for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))}


def test_a_sale_on_one_market_reaches_the_other_markets_feed(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "daemon", "init", str(demo)], check=True, capture_output=True)
    cfg = demo / "stockdrop.toml"
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false")
                   .replace("[listeners.ftp]", "[ingest]\nsettle_seconds = 0.2\n\n[listeners.ftp]"))
    amazon, webshop = demo / "exports" / "amazon", demo / "exports" / "webshop"
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # At start every market is sent what it has never been delivered: all of its listings.
        [first] = wait_for(lambda: feeds(amazon))
        assert amazon_rows(first)["0001234"] == 12 + 40 - 2  # both sources, minus Amazon's buffer
        assert wait_for(lambda: feeds(webshop))

        # The webshop sells 5 of 0001234.
        orders = demo / "data" / "markets" / "demo" / "webshop" / "orders" / "inbox"
        wait_for(orders.is_dir)
        (orders / "o.csv.part").write_text(
            "order_id,line_id,sku,quantity,ordered_at\nW-1,1,0001234,5,2026-12-02T10:00:00Z\n")
        (orders / "o.csv.part").rename(orders / "o.csv")

        # Amazon's next file carries the new quantity, and only what moved.
        later = wait_for(lambda: feeds(amazon)[1:])
        assert amazon_rows(later[0]) == {"0001234": 52 - 5 - 2}
        # The market that sold gets its own delta too.
        shop = wait_for(lambda: feeds(webshop)[1:])
        assert webshop_rows(shop[0]) == {"0001234": 52 - 5}
        assert not list(amazon.glob("*.part")) and not list(webshop.glob("*.part"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == exitcodes.OK, err
