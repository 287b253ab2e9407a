"""Housekeeping: archived originals past their retention, and abandoned partial uploads.

Archive folders are one per day (archive/YYYY-MM-DD), so retention removes
whole days. Staging folders hold uploads in flight; a staged file untouched
for a day belongs to a connection that died (or a crash) and is removed.
Nothing in the spool, held/ or quarantine/ is ever touched here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from daemon.runtime.periodic import Periodic

log = structlog.get_logger(__name__)

STALE_STAGING = timedelta(days=1)


def sweep(archive: Path, staging_folders: Iterable[Path], *, retention_days: int,
          now: datetime) -> dict[str, int]:
    """Remove what has expired; returns counts of what was removed."""
    removed = {"archive_days": 0, "staging_files": 0}
    cutoff = (now - timedelta(days=retention_days)).date()
    if archive.is_dir():
        for day in archive.iterdir():
            try:
                when = datetime.strptime(day.name, "%Y-%m-%d").date()
            except ValueError:
                continue  # not ours: leave it
            if day.is_dir() and when < cutoff:
                shutil.rmtree(day, ignore_errors=True)
                removed["archive_days"] += 1
    stale_before = (now - STALE_STAGING).timestamp()
    for folder in staging_folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < stale_before:
                    path.unlink()
                    removed["staging_files"] += 1
            except FileNotFoundError:
                continue
    return removed


def janitor(archive: Path, staging_folders: Callable[[], Iterable[Path]], retention_days: int, *,
            leads: Callable[[], bool] = lambda: True, interval: float = 3600.0) -> Periodic:
    """``sweep`` at start and then every ``interval`` seconds, as a runtime service.

    ``leads`` says whether this daemon sweeps now: daemons that share a
    data_dir (a network filesystem) share its archive too, and one of them
    sweeps it (``db.leader.Leadership`` named for the data_dir).
    """

    def run() -> None:
        if not leads():
            return
        removed = sweep(archive, staging_folders(), retention_days=retention_days, now=datetime.now(UTC))
        if any(removed.values()):
            log.info("retention_sweep", **removed)

    return Periodic("janitor", interval, run, at_start=True)
