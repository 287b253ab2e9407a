"""Run the benchmarks: ``python -m bench [ingest|receivers|cli|exports|latency|flood|hostile] [options]``; no argument runs them all."""

from __future__ import annotations

import sys

from bench import cli_bench, exports_bench, flood_bench, hostile_bench, ingest_bench, latency_bench, receivers_bench

RUNS = {"ingest": ingest_bench.main, "receivers": receivers_bench.main, "cli": cli_bench.main,
        "exports": exports_bench.main, "latency": latency_bench.main, "flood": flood_bench.main,
        "hostile": hostile_bench.main}

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] in RUNS:
        sys.exit(RUNS[args[0]](args[1:]))
    # options without a name are the ingest bench's, as before this dispatch existed
    sys.exit(ingest_bench.main(args) if args else max(run([]) for run in RUNS.values()))
