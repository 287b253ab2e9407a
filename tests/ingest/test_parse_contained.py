"""The contained parser: any failure in the worker rejects the file, never the caller."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from daemon.errors import FeedError
from daemon.formats.feeds import ParseOptions, parse_feed
from daemon.ingest import contained


@pytest.fixture
def pool():
    with contained.ParserPool(size=2) as pool:
        yield pool


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.csv"
    path.write_bytes(b"sku,quantity\nA,1\nB,x\n")
    return path


def test_the_contained_result_equals_the_direct_one(pool, good):
    direct, boxed = parse_feed(good, ParseOptions()), pool.parse(good, ParseOptions())
    assert boxed.frame.equals(direct.frame) and boxed.errors == direct.errors
    assert (boxed.header, boxed.total_rows, boxed.delimiter) == (direct.header, direct.total_rows, ",")


def test_a_feed_error_inside_the_worker_comes_back_as_a_feed_error(pool, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FeedError, match="the file is empty"):
        pool.parse(path, ParseOptions())


def test_a_parser_that_hangs_is_killed_with_a_timeout_reason_and_the_next_parse_works(pool, good):
    with pytest.raises(FeedError, match="did not finish within 1 s"):
        pool.parse(good, ParseOptions(), timeout_s=1, fault="hang")
    assert pool.parse(good, ParseOptions()).frame["sku"].to_list() == ["A"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("raise", "TestFault"), ("abort", "process died"), ("memory", "ran out of memory")],
)
def test_a_base_exception_an_abort_or_a_memory_blowup_rejects_only_that_file(pool, good, fault, reason):
    with pytest.raises(FeedError, match=reason):
        pool.parse(good, ParseOptions(), fault=fault, memory_bytes=256 * 1024**2)
    assert pool.parse(good, ParseOptions()).total_rows == 2


def test_the_worker_is_reused_across_calls(pool, good):
    pool.parse(good, ParseOptions())
    first = {w.process.pid for w in pool._all}
    for _ in range(5):
        pool.parse(good, ParseOptions())
    assert {w.process.pid for w in pool._all} == first


def test_parallel_callers_each_get_their_own_answer(pool, tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"f{i}.csv"
        path.write_bytes(f"sku,quantity\nS{i},{i}\n".encode())
        paths.append(path)
    results: dict[int, list[str]] = {}

    def run(i: int) -> None:
        results[i] = pool.parse(paths[i], ParseOptions()).frame["sku"].to_list()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: [f"S{i}"] for i in range(6)}


def test_closing_the_pool_stops_its_processes(good):
    pool = contained.ParserPool()
    pool.parse(good, ParseOptions())
    workers = list(pool._all)
    pool.close()
    assert all(w.process.poll() is not None for w in workers)
    with pytest.raises(RuntimeError):
        pool.parse(good, ParseOptions())


def test_warm_can_wait_until_a_worker_is_ready_and_the_next_parse_uses_it(pool, good):
    assert pool.warm(wait_s=60)
    (worker,) = pool._all
    pool.parse(good, ParseOptions())
    assert {w.process.pid for w in pool._all} == {worker.process.pid}


def test_a_worker_that_dies_before_it_is_ready_rejects_the_file_it_was_given(good):
    worker = contained._Worker()
    try:
        worker.process.kill()
        worker.process.wait(10)
        with pytest.raises(FeedError, match="parser process did not start"):
            worker.call(("feed", str(good), ParseOptions(), 2**31, None), timeout_s=10)
    finally:
        worker.kill()


def test_an_idle_worker_that_died_is_replaced_before_the_next_file(pool, good):
    pool.warm()
    (worker,) = pool._all
    worker.process.kill()
    worker.process.wait(10)
    assert pool.parse(good, ParseOptions()).total_rows == 2
    assert worker not in pool._all


def test_order_cancellation_and_listing_files_are_read_in_the_worker_as_they_are_directly(pool, tmp_path):
    from daemon.formats.listings import read_listings
    from daemon.formats.orders import read_cancellations, read_orders

    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,line_id,sku,quantity,ordered_at\nO1,1,0017,2,2026-11-29T10:00:00Z\n"
                      "O2,1,B,two,2026-11-29T10:00:00Z\n")
    cancels = tmp_path / "cancels.csv"
    cancels.write_text("order_id,line_id,cancelled_at,origin\nO1,1,2026-11-29T11:00:00Z,market\n")
    listings = tmp_path / "listings.csv"
    listings.write_text("sku,quantity\n0017,5\n")
    assert pool.read_orders(orders) == read_orders(orders)
    assert pool.read_cancellations(cancels) == read_cancellations(cancels)
    assert pool.read_listings(listings) == read_listings(listings)


def test_an_order_file_that_panics_or_hangs_the_worker_is_a_feed_error_and_the_next_one_reads(pool, tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,line_id,sku,quantity,ordered_at\nO1,1,A,1,2026-11-29T10:00:00Z\n")
    with pytest.raises(FeedError, match="TestFault"):
        pool.read_orders(orders, fault="raise")
    with pytest.raises(FeedError, match="did not finish"), contained.ParserPool(1, timeout_s=1) as quick:
        quick.read_orders(orders, fault="hang")
    assert len(pool.read_orders(orders).rows) == 1


_ORPHAN = """
import sys, threading
from pathlib import Path
from daemon.formats.feeds import ParseOptions
from daemon.ingest.contained import ParserPool
pool = ParserPool(1, timeout_s=3600)
pool.warm(wait_s=60)
(worker,) = pool._all
threading.Thread(target=pool.parse, args=(Path(sys.argv[1]), ParseOptions()), kwargs={"fault": "hang"},
                 daemon=True).start()
print(worker.process.pid, flush=True)
threading.Event().wait()
"""


def test_a_worker_dies_with_its_parent_even_in_the_middle_of_a_parse(good) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(good)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        time.sleep(0.5)  # the worker is in its (endless) parse now
        os.kill(worker, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return
            # a zombie waiting for its new parent to reap it is dead too
            with open(f"/proc/{worker}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    return
            time.sleep(0.1)
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the parser worker outlived its parent by 5 s")
    finally:
        if parent.poll() is None:
            parent.kill()
