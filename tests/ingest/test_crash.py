"""A worker killed by SIGKILL loses nothing and applies nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.db import stock as store
from daemon.db.catalog import get_source, sync_config
from daemon.db.engine import session_factory
from daemon.db.models import LedgerEntry, Upload
from daemon.settings import load_settings
from tests.conftest import Database
from tests.helpers import write_config

ROOT = Path(__file__).parent.parent.parent

ADJUST = """
[[merchants]]
name = "acme"
[[merchants.sources]]
name = "wh1"
[merchants.sources.feed]
mode = "adjust"
unknown_sku = "create"
"""


def child(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.ingest.crash_child", *map(str, args)],
                          cwd=ROOT, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("crash_at", ["before_commit", "before_archive"])
def test_a_worker_killed_mid_file_applies_it_exactly_once_after_restart(
    database: Database, tmp_path: Path, crash_at: str
) -> None:
    from datetime import UTC, datetime

    cfg = write_config(tmp_path / "conf", ADJUST, database_url=database.url)
    settings = load_settings(cfg)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        sync_config(s, settings, datetime.now(UTC))
        store.set_one(s, get_source(s, "acme", "wh1"), "A", 10, actor="test", now=datetime.now(UTC))
    feed = tmp_path / "delta.csv"
    feed.write_text("sku,quantity\nA,5\nB,2\n")

    crashed = child(cfg, "deliver", feed, crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    spool = settings.data_dir / "spool"
    assert len(list(spool.iterdir())) == 1  # claimed, not finished
    with sessions() as s:
        quantities = {r.sku: r.quantity for r in store.inventory(s, source="wh1")}
    if crash_at == "before_commit":
        assert quantities == {"A": 10}  # the transaction never committed
    else:
        assert quantities == {"A": 15, "B": 2}

    recovered = child(cfg, "recover")
    assert recovered.returncode == 0, recovered.stderr
    with sessions() as s:
        assert {r.sku: r.quantity for r in store.inventory(s, source="wh1")} == {"A": 15, "B": 2}
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 3  # set A, +5 A, +2 B
        statuses = s.scalars(select(Upload.status)).all()
        assert statuses == ["applied"]
    assert list(spool.iterdir()) == []
    archived = list((settings.data_dir / "archive").rglob("*delta.csv"))
    assert len(archived) == 1 and archived[0].read_text() == "sku,quantity\nA,5\nB,2\n"
    assert len(list((settings.data_dir / "sources" / "acme" / "wh1" / "results").glob("*.result.csv"))) == 1


def test_a_claim_interrupted_before_the_rename_is_taken_again_from_the_inbox(
    database: Database, tmp_path: Path
) -> None:
    """The history row committed, the rename never happened: the row goes, the file stays."""
    from datetime import UTC, datetime

    from daemon.db import uploads
    from daemon.ingest.pipeline import Pipeline
    from daemon.ingest.sources import SourceBook

    cfg = write_config(tmp_path / "conf", ADJUST, database_url=database.url)
    settings = load_settings(cfg)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        sync_config(s, settings, datetime.now(UTC))
        book = SourceBook.load(s, settings)
        info = next(iter(book))
        uploads.record_received(s, source_id=info.id, original_name="f.csv", size=1, sha256="0" * 64,
                                protocol="watch", user=None, remote_addr=None,
                                received_at=datetime.now(UTC), elapsed_s=None)
    pipeline = Pipeline(settings, sessions, book, workers=1)
    assert pipeline.intake.recover() == []
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Upload)) == 0


def test_an_order_file_whose_worker_was_killed_subtracts_exactly_once_after_restart(
    database: Database, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from daemon.db.markets import sync_markets

    cfg = write_config(tmp_path / "conf", ADJUST + '\n[[merchants.markets]]\nname = "shop"\n',
                       database_url=database.url)
    settings = load_settings(cfg)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        sync_config(s, settings, datetime.now(UTC))
        sync_markets(s, settings, datetime.now(UTC))
        store.set_one(s, get_source(s, "acme", "wh1"), "A", 10, actor="test", now=datetime.now(UTC))
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,line_id,sku,quantity,ordered_at\nO-1,1,A,3,2026-11-29T10:00:00Z\n")

    crashed = child(cfg, "deliver", orders, "orders_before_commit")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    with sessions() as s:
        assert {r.sku: r.quantity for r in store.inventory(s, source="wh1")} == {"A": 10}

    recovered = child(cfg, "recover")
    assert recovered.returncode == 0, recovered.stderr
    with sessions() as s:
        assert {r.sku: r.quantity for r in store.inventory(s, source="wh1")} == {"A": 7}
        assert s.scalars(select(Upload.status)).all() == ["applied"]
    assert list((settings.data_dir / "spool").iterdir()) == []
