"""Housekeeping: archived originals past their retention, and abandoned partial uploads.

Archive folders are one per day (archive/YYYY-MM-DD), so retention removes
whole days. Staging folders hold uploads in flight; a staged file untouched
for a day belongs to a connection that died (or a crash) and is removed.
Nothing in the spool, held/ or quarantine/ is ever touched here.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

log = structlog.get_logger("daemon.ingest.retention")

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


class Janitor:
    """Runs ``sweep`` at start and then every ``interval`` seconds."""

    name = "janitor"

    def __init__(self, archive: Path, staging_folders: list[Path], retention_days: int,
                 interval: float = 3600.0) -> None:
        self._archive = archive
        self._staging = staging_folders
        self._retention = retention_days
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run_once(self) -> None:
        try:
            removed = sweep(self._archive, self._staging, retention_days=self._retention,
                            now=datetime.now(UTC))
            if any(removed.values()):
                log.info("retention_sweep", **removed)
        except OSError:
            log.exception("retention_sweep_failed")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._run_once()

    def start(self) -> None:
        self._stop.clear()
        self._run_once()
        self._thread = threading.Thread(target=self._loop, name="janitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def check(self) -> None:
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError("the janitor thread died")


