"""The demo that `stockdrop init` writes: a config and some SKUs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from daemon.auth.passwords import hash_password
from daemon.db.accounts import add_account
from daemon.db.catalog import get_or_create_product, get_source
from daemon.db.markets import get_market
from daemon.db.models import Listing
from daemon.db.stock import set_one
from daemon.inventory.stock import Reason

DEMO_CONFIG = """\
# Stockdrop demo configuration, written by `stockdrop init`.
# Every key is documented in config/stockdrop.example.toml.

# Relative paths are relative to this file's folder.
data_dir = "data"

# [database] is left out: the default is a SQLite file in data_dir.

[listeners.ftp]
enabled = true
host = "127.0.0.1"
port = 2121

[listeners.sftp]
enabled = true
host = "127.0.0.1"
port = 2222

[[merchants]]
name = "demo"
timezone = "Europe/Berlin"
report_recipients = ["merchant@example.com"]

# The merchant-fulfilled source exists without being listed.
[[merchants.sources]]
name = "main-warehouse"
kind = "warehouse"
priority = 10

[merchants.sources.feed]
mode = "set"
scope = "partial"

# The warehouse is sent its open order lines as CSV files in a local folder
# (exports/main-warehouse), every 10 seconds until its status files (dropped
# in data/sources/demo/main-warehouse/statuses/inbox) confirm them.
[merchants.sources.orders_export]
transport = "dir"
folder = "exports/main-warehouse"
every_seconds = 10
resend_limit = 5

# Two markets the demo sells on. Each is sent its quantities as files in a
# local folder (exports/<market>); a real market's export would say
# transport = "ftp", "ftps" or "sftp", with its host and login.
[[merchants.markets]]
name = "webshop"
kind = "generic"

[merchants.markets.export]
transport = "dir"
folder = "exports/webshop"
format = "csv"
debounce_seconds = 2

[[merchants.markets]]
name = "amazon"
kind = "amazon"
buffer = 2  # safety stock: Amazon is sent 2 fewer than the sources hold

[merchants.markets.export]
transport = "dir"
folder = "exports/amazon"
format = "amazon_price_quantity"
debounce_seconds = 2
"""

# The markets of DEMO_CONFIG; every demo SKU is listed on each.
DEMO_MARKETS = ("webshop", "amazon")

# SKUs that show what Stockdrop keeps exactly: leading zeros, dashes, dots.
DEMO_STOCK = [
    ("0001234", 12, 40),
    ("0001235", 0, 25),
    ("TSHIRT-RED-M", 5, 18),
    ("TSHIRT-RED-L", 3, 0),
    ("MUG-11OZ.WHITE", 30, 120),
]


# The demo's FTP/SFTP login. The demo listens on 127.0.0.1 only; anything
# else should use `stockdrop user add SOURCE --generate`.
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"


def seed_demo(session: Session, now: datetime) -> int:
    mf = get_source(session, "demo", "merchant-fulfilled")
    wh = get_source(session, "demo", "main-warehouse")
    add_account(session, wh, DEMO_USER, hash_password(DEMO_PASSWORD), now)
    for sku, mf_qty, wh_qty in DEMO_STOCK:
        set_one(session, mf, sku, mf_qty, actor="init", now=now, reason=Reason.IMPORT)
        set_one(session, wh, sku, wh_qty, actor="init", now=now, reason=Reason.IMPORT)
    for name in DEMO_MARKETS:
        market = get_market(session, "demo", name)
        for sku, _, _ in DEMO_STOCK:
            product = get_or_create_product(session, market.merchant_id, sku, now)
            session.add(Listing(market_id=market.id, product_id=product.id, updated_at=now))
    return len(DEMO_STOCK)
