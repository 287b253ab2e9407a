"""Files of one source apply one after another in receive order; sources run in parallel."""

from __future__ import annotations

import threading
import time

from daemon.ingest.dispatch import Dispatcher
from tests.ingest.conftest import IngestEnv


def test_files_of_one_source_apply_in_receive_order(env: IngestEnv) -> None:
    env.pipeline.dispatcher.start()
    ids = [env.arrive(f"f{i}.csv", f"sku,quantity\nA,{i}\nB{i},1\n") for i in range(12)]
    assert env.pipeline.dispatcher.wait_idle(60)
    assert env.quantities()["A"] == 11
    with env.sessions() as s:
        from daemon.db import stock as store

        refs = [e.reference for e in reversed(store.ledger(s, sku="A", limit=100))]
    assert refs == [f"upload:{i}" for i in ids[1:]]  # 0 -> 0 is no change, then 1..11 in order
    assert all(env.show(i)[0].status == "applied" for i in ids)


def test_one_source_never_has_two_files_in_flight_but_sources_run_in_parallel() -> None:
    lock = threading.Lock()
    running: dict[int, int] = {}
    overlap_same: list[int] = []
    peak_sources = [0]

    def handle(upload_id: int) -> None:
        source = upload_id // 100
        with lock:
            running[source] = running.get(source, 0) + 1
            if running[source] > 1:
                overlap_same.append(source)
            peak_sources[0] = max(peak_sources[0], sum(1 for v in running.values() if v))
        time.sleep(0.05)
        with lock:
            running[source] -= 1

    d = Dispatcher(handle, workers=3)
    d.start()
    for i in range(5):
        for source in (1, 2, 3):
            d.submit(source, source * 100 + i)
    assert d.wait_idle(30)
    d.stop(5)
    assert overlap_same == []
    assert peak_sources[0] >= 2


def test_a_failing_file_is_retried_before_the_next_file_of_its_source() -> None:
    order: list[int] = []
    failures = {1: 1}

    def handle(upload_id: int) -> None:
        order.append(upload_id)
        if failures.get(upload_id):
            failures[upload_id] -= 1
            raise RuntimeError("database went away")

    d = Dispatcher(handle, workers=2, retry_delays=(0.1,))
    d.start()
    d.submit(7, 1)
    d.submit(7, 2)
    assert d.wait_idle(10)
    d.stop(5)
    assert order == [1, 1, 2]


def test_a_retry_waits_its_delay_and_never_runs_a_source_twice_at_once() -> None:
    calls: list[float] = []
    running = [0]
    overlap: list[int] = []
    lock = threading.Lock()

    def handle(upload_id: int) -> None:
        with lock:
            running[0] += 1
            if running[0] > 1:
                overlap.append(upload_id)
            calls.append(time.monotonic())
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if len(calls) == 1:
            raise RuntimeError("database went away")

    d = Dispatcher(handle, workers=3, retry_delays=(0.5,))
    d.start()
    d.submit(7, 1)
    d.submit(7, 2)
    assert d.wait_idle(10)
    d.stop(5)
    assert overlap == []
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.5  # not retried at once: the delay is a floor, not a timing
