"""Command-line start-up, against the bare interpreter measured in the same run.

    python -m bench cli [--runs 15]

Each command runs in a fresh process, as a user's shell starts it (the
installed ``stockdrop`` script, through the same interpreter), on a demo made
by ``stockdrop init``. The figure is the median wall time of ``--runs`` runs,
interleaved with runs of ``python -c pass`` so drift hits both alike.
Targets on this machine class: ``--version`` and ``--help`` at most 0.3 s,
read-only commands at most 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"--version": 0.3, "--help": 0.3}
READ_ONLY = 1.0


def _seconds(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cli")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    stockdrop = [sys.executable, "-m", "daemon"]
    with tempfile.TemporaryDirectory(prefix="stockdrop-bench-cli-") as tmp:
        demo = Path(tmp) / "demo"
        subprocess.run([*stockdrop, "init", str(demo)], check=True, capture_output=True)
        config = ["-c", str(demo / "stockdrop.toml")]
        commands = {
            "--version": ["--version"],
            "--help": ["--help"],
            "inventory --sku X --json": [*config, "inventory", "--sku", "0001234", "--json"],
            "history": [*config, "history"],
            "ledger --json": [*config, "ledger", "--json"],
        }
        times: dict[str, list[float]] = {name: [] for name in ["python -c pass", *commands]}
        for _ in range(args.runs):
            times["python -c pass"].append(_seconds([sys.executable, "-c", "pass"]))
            for name, cli_args in commands.items():
                times[name].append(_seconds([*stockdrop, *cli_args]))
    base = statistics.median(times["python -c pass"])
    print(f"# CLI start-up, median of {args.runs} runs each, interleaved")
    print(f"{'python -c pass':28s} {base:.3f}s  (the baseline)")
    missed = 0
    for name in commands:
        median = statistics.median(times[name])
        target = TARGETS.get(name, READ_ONLY)
        met = median <= target
        missed += not met
        print(f"{name:28s} {median:.3f}s  ratio {median / base:5.1f}x the bare interpreter  "
              f"(target <= {target:g}s)  {'MET' if met else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
