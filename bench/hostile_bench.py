"""Hostile files against the configured parser limits: peak parser RSS and time.

    python -m bench hostile [--bomb-gb 2] [--whitespace-mb 500] [--line-mb 200]

Each file goes to a fresh contained parser worker (``ParserPool``) with the
limits a default configuration gives it (``[ingest]`` parse_memory_mb,
parse_timeout_seconds, max_uncompressed_bytes, max_inflation_ratio); the
worker's resident memory is sampled every 5 ms. The files:

1. a lying zip bomb: an XLSX whose sheet declares 2,000,000 bytes and
   inflates to --bomb-gb GB;
2. a sheet with --whitespace-mb MB of whitespace before its first row (about
   500 KB on disk), under the default limits, then with the ratio and
   unpacked-size limits raised so that it is read to the end;
3. a "CSV" of one --line-mb MB line without a line break.

The figures are printed beside the limits; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daemon.errors import FeedError
from daemon.formats.feeds import ParseOptions
from daemon.ingest.contained import ParserPool, _rss_bytes
from daemon.settings import IngestSettings
from sample_files import hostile

MB = 1024 * 1024


def _measure(path: Path, options: ParseOptions, ingest: IngestSettings) -> tuple[float, float, str]:
    """Seconds, peak worker RSS in MB, and what came of the file."""
    with ParserPool(1, timeout_s=ingest.parse_timeout_seconds, memory_bytes=ingest.parse_memory_mb * MB) as pool:
        pool.warm(wait_s=60)
        pids = [w.process.pid for w in pool._all]  # the bench watches the worker it started
        peak, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, *(_rss_bytes(p) for p in pids))
                time.sleep(0.005)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        started = time.perf_counter()
        try:
            parsed = pool.parse(path, options)
            outcome = f"read: {parsed.frame.height} rows, {len(parsed.errors)} row errors"
        except FeedError as exc:
            outcome = f"rejected: {exc}"
        elapsed = time.perf_counter() - started
        done.set()
        watcher.join()
    return elapsed, peak / MB, outcome


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hostile")
    parser.add_argument("--bomb-gb", type=float, default=2.0)
    parser.add_argument("--whitespace-mb", type=int, default=500)
    parser.add_argument("--line-mb", type=int, default=200)
    args = parser.parse_args(argv)
    ingest = IngestSettings()
    configured = ParseOptions(max_uncompressed_bytes=ingest.max_uncompressed_bytes,
                              max_inflation_ratio=ingest.max_inflation_ratio, max_sku_length=ingest.max_sku_length)
    raised = ParseOptions(max_uncompressed_bytes=4 * 1024 * MB, max_inflation_ratio=1e6)
    print(f"limits: parse_memory_mb {ingest.parse_memory_mb:,} MB (above an idle worker), parse_timeout_seconds "
          f"{ingest.parse_timeout_seconds:g} s, max_uncompressed_bytes {ingest.max_uncompressed_bytes:,}, "
          f"max_inflation_ratio {ingest.max_inflation_ratio:g}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cases: list[tuple[str, Callable[[Path], Path], ParseOptions]] = [
            (f"lying bomb ({args.bomb_gb:g} GB declared as 2,000,000 bytes)",
             lambda p: hostile.lying_bomb(p, int(args.bomb_gb * 1024 * MB)), configured),
            (f"whitespace sheet ({args.whitespace_mb} MB before row 1), default limits",
             lambda p: hostile.whitespace_sheet(p, args.whitespace_mb * MB), configured),
            (f"whitespace sheet ({args.whitespace_mb} MB before row 1), ratio and size limits raised",
             lambda p: hostile.whitespace_sheet(p, args.whitespace_mb * MB), raised),
            (f"one {args.line_mb} MB line without a line break",
             lambda p: hostile.long_line(p, args.line_mb * 1000 * 1000), configured),
        ]
        for i, (label, make, options) in enumerate(cases):
            suffix = ".csv" if "line" in label and "sheet" not in label else ".xlsx"
            path = make(root / f"case{i}{suffix}")
            elapsed, peak, outcome = _measure(path, options, ingest)
            print(f"{label}: {path.stat().st_size / 1e6:,.1f} MB file")
            print(f"    {elapsed:6.2f} s, peak parser RSS {peak:,.0f} MB (limit {ingest.parse_memory_mb:,} MB above idle)")
            print(f"    {outcome[:160]}")
            path.unlink()
    return 0
