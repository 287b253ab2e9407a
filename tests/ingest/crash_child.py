"""A worker process that the crash tests kill with SIGKILL at a chosen point.

    python -m tests.ingest.crash_child CONFIG deliver FILE CRASH_AT
    python -m tests.ingest.crash_child CONFIG recover

CRASH_AT: ``before_commit`` (the apply ran inside the transaction, which
never commits), ``mid_rebuild`` (a big first load on PostgreSQL, its indexes
dropped and its rows written: ``db.bulk.pgrebuild``) or ``before_archive``
(committed; the file is still in the spool);
``orders_before_commit`` delivers FILE to market "shop" as an order file.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from daemon.db import bulk
from daemon.db.engine import make_engine, session_factory
from daemon.ingest import apply_market, process
from daemon.ingest.arrival import Arrival
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.sources import SourceBook
from daemon.settings import load_settings


def _die(*_a: object, **_k: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    settings = load_settings(sys.argv[1])
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    with sessions() as s:
        book = SourceBook.load(s, settings)
    pipeline = Pipeline(settings, sessions, book, workers=1)
    if sys.argv[2] == "deliver":
        file, crash_at = Path(sys.argv[3]), sys.argv[4]
        if crash_at == "before_commit":
            real = bulk.write_plan

            def write_then_die(*a, **k):  # type: ignore[no-untyped-def]
                real(*a, **k)
                _die()

            bulk.write_plan = write_then_die  # type: ignore[assignment]
        elif crash_at == "mid_rebuild":  # a first load's indexes dropped, its rows COPYed
            from daemon.db.bulk import pgrebuild
            from daemon.db.bulk import postgres as bulk_pg

            pgrebuild.MIN_ROWS = 10
            real_copy = bulk_pg.copy_new

            def copy_then_die(*a, **k):  # type: ignore[no-untyped-def]
                real_copy(*a, **k)
                if k.get("ids") is not None:
                    _die()

            bulk_pg.copy_new = copy_then_die  # type: ignore[assignment]
        elif crash_at == "before_archive":
            process.Processor._file_away = _die  # type: ignore[assignment,method-assign]
        if crash_at == "orders_before_commit":
            real_orders = apply_market.apply_orders

            def apply_then_die(*a, **k):  # type: ignore[no-untyped-def]
                real_orders(*a, **k)
                _die()

            apply_market.apply_orders = apply_then_die  # type: ignore[assignment]
            market = book.market_by_name("acme", "shop")
            assert market is not None
            arrival = Arrival(path=file, source_id=None, market_id=market.id, kind="orders",
                              original_name=file.name, protocol="cli", received_at=datetime.now(UTC))
        else:
            info = book.by_name("acme", "wh1")
            assert info is not None
            arrival = Arrival(path=file, source_id=info.id, original_name=file.name,
                              protocol="cli", received_at=datetime.now(UTC))
        upload_id = pipeline.deliver(arrival)
        pipeline.processor.process(upload_id)
        sys.exit(3)  # not reached when the crash point is hit
    # recover: what `stockdrop run` does at start.
    pipeline.dispatcher.start()
    pipeline.intake.recover()
    ok = pipeline.dispatcher.wait_idle(60)
    pipeline.dispatcher.stop(10)
    sys.exit(0 if ok else 4)


if __name__ == "__main__":
    main()
