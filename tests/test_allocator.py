"""The daemon's processes return freed memory to the system at once (daemon/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

# Build and drop a frame of about 480 MB, then report how much of it the
# process still holds. jemalloc reads its configuration once, when polars
# loads, so the order of the two imports is the whole point.
_PROBE = """
import {first}, {second}
import polars as pl

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))

before = rss_mb()
frame = pl.select(pl.int_range(0, 30_000_000).alias("a")).with_columns(b=pl.col("a") * 2)
del frame
print(rss_mb() - before)
"""


def _held_mb(first: str, second: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(first=first, second=second)],
                         env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_memory_freed_by_polars_goes_back_at_once_once_the_daemon_package_is_imported():
    assert _held_mb("daemon", "polars") < 100


def test_without_it_the_allocator_keeps_the_pages_which_is_what_the_test_above_would_catch():
    # The control: polars loaded first, with its own decay (pages kept for
    # half a second and more). If this ever holds nothing, the probe above
    # has stopped measuring the setting.
    assert _held_mb("polars", "daemon") > 300


def test_the_parser_workers_get_the_setting_too() -> None:
    from daemon.ingest import contained

    with contained.ParserPool(size=1) as pool:
        assert pool.warm(wait_s=60)
        (worker,) = pool._all
        with open(f"/proc/{worker.process.pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    conf = env[b"_RJEM_MALLOC_CONF"].decode()
    # jemalloc takes the last value of each option (polars may have put its own first).
    decays = [opt.split(":")[1] for opt in conf.split(",") if opt.startswith("dirty_decay_ms:")]
    assert decays[-1] == "0", conf
