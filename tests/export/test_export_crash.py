"""``stockdrop export`` SIGKILLed mid-delivery, then run again: the same file once, nothing lost.

The kill comes while the file is being written on the market's side: the
outbox row is committed, the temporary file is open. The destination's
``<name>.part`` is a FIFO nobody reads, so the write blocks there until the
kill, at exactly that moment, every time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from daemon.db.catalog import get_or_create_product, get_source
from daemon.db.engine import session_factory
from daemon.db.markets import get_market
from daemon.db.models import ExportRecord, Listing, Product
from daemon.db.stock import set_one
from daemon.db.sync import sync_with_config
from daemon.settings import load_settings
from tests.conftest import Database

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

CONFIG = """
data_dir = "data"
[database]
url = "{url}"
[[merchants]]
name = "acme"
[[merchants.sources]]
name = "wh"
[[merchants.markets]]
name = "amz"
[merchants.markets.export]
folder = "out"
format = "amazon_price_quantity"
file_name = "{{market}}-{{kind}}-{{delivery}}.{{ext}}"
"""


def stockdrop(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_kill_mid_delivery_resends_the_same_file_once_and_loses_no_change(database: Database,
                                                                            tmp_path: Path) -> None:
    cfg = tmp_path / "stockdrop.toml"
    cfg.write_text(CONFIG.format(url=database.url))
    settings = load_settings(cfg)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        sync_with_config(s, settings, NOW)
        source, market = get_source(s, "acme", "wh"), get_market(s, "acme", "amz")
        for sku, quantity in (("0001234", 12), ("B", 5)):
            set_one(s, source, sku, quantity, actor="test", now=NOW)
            product = get_or_create_product(s, market.merchant_id, sku, NOW)
            s.add(Listing(market_id=market.id, product_id=product.id, updated_at=NOW))
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "amz-delta-1.txt.part")  # the first export's temporary file: a write that never ends

    proc = stockdrop(cfg, "export", "amz")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the row is committed and the delivery has begun
        with sessions() as s:
            if s.scalar(select(ExportRecord.id)) is not None:
                break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with sessions() as s:
        [owed] = s.scalars(select(ExportRecord)).all()
        assert (owed.status, owed.file_name) == ("pending", "amz-delta-1.txt")
        assert set(s.scalars(select(Listing.last_sent_quantity))) == {None}  # nothing advanced
    assert not (out / "amz-delta-1.txt").exists()

    (out / "amz-delta-1.txt.part").unlink()  # the market's side is healthy again
    with sessions() as s, s.begin():  # and a sale happened meanwhile
        set_one(s, get_source(s, "acme", "wh"), "B", 4, actor="test", now=NOW)
    again = stockdrop(cfg, "export", "amz")
    _stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["amz-delta-1.txt", "amz-delta-2.txt"]
    assert (out / "amz-delta-1.txt").read_bytes() == owed.content  # the owed file, byte for byte
    assert (out / "amz-delta-2.txt").read_text().splitlines()[1:] == ["B\t\t4"]  # then only the change
    with sessions() as s:
        assert [e.status for e in s.scalars(select(ExportRecord).order_by(ExportRecord.id))] == ["delivered"] * 2
        assert dict(s.execute(select(Product.sku, Listing.last_sent_quantity)
                              .join(Product, Product.id == Listing.product_id)).all()) == {"0001234": 12, "B": 4}
