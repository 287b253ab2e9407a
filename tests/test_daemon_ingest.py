"""The running daemon takes a file dropped into a watched inbox."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from daemon import exitcodes


def test_a_file_dropped_into_the_inbox_of_the_running_daemon_is_applied(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "daemon", "init", str(demo)], check=True, capture_output=True)
    cfg = demo / "stockdrop.toml"
    # The demo also serves FTP and SFTP on fixed ports; this test only needs the watcher.
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false")
                   .replace("[listeners.ftp]", "[ingest]\nsettle_seconds = 0.2\n\n[listeners.ftp]")
                   + '\n[[merchants.markets]]\nname = "shop"\n')
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        inbox = demo / "data" / "sources" / "demo" / "main-warehouse" / "inbox"
        tmp = inbox / "feed.csv.part"
        tmp.write_text("sku,quantity\n0001234,3\n")
        tmp.rename(inbox / "feed.csv")
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "history", "--json"],
                                 check=False, capture_output=True, text=True)
            uploads = json.loads(out.stdout)["uploads"] if out.returncode == 0 else []
            if uploads and uploads[0]["status"] not in ("received", "processing"):
                status = uploads[0]
                break
            time.sleep(0.3)
        assert status is not None and status["status"] == "applied", status
        assert status["protocol"] == "watch" and status["original_name"] == "feed.csv"
        inv = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "inventory", "--sku",
                              "0001234", "--source", "main-warehouse", "--json"],
                             capture_output=True, text=True, check=True)
        assert json.loads(inv.stdout)["inventory"][0]["quantity"] == 3
        assert not any(inbox.iterdir())

        # A market's order file dropped into its orders inbox subtracts from stock.
        orders = demo / "data" / "markets" / "demo" / "shop" / "orders" / "inbox"
        deadline = time.monotonic() + 30
        while not orders.is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)
        (orders / "o.csv.part").write_text(
            "order_id,line_id,sku,quantity,ordered_at\nO-1,1,0001234,2,2026-11-29T10:00:00Z\n")
        (orders / "o.csv.part").rename(orders / "o.csv")
        deadline = time.monotonic() + 60
        latest = None
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "history", "--json"],
                                 check=False, capture_output=True, text=True)
            uploads = json.loads(out.stdout)["uploads"] if out.returncode == 0 else []
            if uploads and uploads[0]["kind"] == "orders" and uploads[0]["status"] not in (
                    "received", "processing"):
                latest = uploads[0]
                break
            time.sleep(0.3)
        assert latest is not None and latest["status"] == "applied", latest
        assert latest["source"] == "market:shop"
        inv = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "inventory", "--sku",
                              "0001234", "--json"], capture_output=True, text=True, check=True)
        total = sum(r["quantity"] for r in json.loads(inv.stdout)["inventory"])
        assert total == 12 + 3 - 2  # merchant-fulfilled 12, warehouse 3, minus the order
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == exitcodes.OK, err


def _finished_upload(cfg: Path, kind: str, timeout: float = 60) -> dict | None:  # type: ignore[type-arg]
    """The newest upload of ``kind`` once it is final, asked as a user would (``history --json``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "history", "--json"],
                             check=False, capture_output=True, text=True)
        uploads = json.loads(out.stdout)["uploads"] if out.returncode == 0 else []
        mine = [u for u in uploads if u["kind"] == kind]
        if mine and mine[0]["status"] not in ("received", "processing"):
            return mine[0]
        time.sleep(0.3)
    return None


def test_a_market_added_while_the_daemon_runs_gets_its_folders_without_a_restart(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "daemon", "init", str(demo)], check=True, capture_output=True)
    cfg = demo / "stockdrop.toml"
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false")
                   .replace("[listeners.ftp]", "[ingest]\nsettle_seconds = 0.2\n\n[listeners.ftp]"))
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        added = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "market", "add", "late-shop"],
                               check=False, capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
        orders = demo / "data" / "markets" / "demo" / "late-shop" / "orders" / "inbox"
        deadline = time.monotonic() + 30
        while not orders.is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orders.is_dir(), "the running daemon never made the new market's folders"
        (orders / "o.csv.part").write_text(
            "order_id,line_id,sku,quantity,ordered_at\nO-1,1,0001234,2,2026-11-29T10:00:00Z\n")
        (orders / "o.csv.part").rename(orders / "o.csv")
        taken = _finished_upload(cfg, "orders")
        assert taken is not None and taken["status"] == "applied", taken
        assert taken["source"] == "market:late-shop"
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == exitcodes.OK, err
