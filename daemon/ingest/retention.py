"""Housekeeping: archived originals past their retention, and abandoned partial uploads.

Archive folders are one per day (archive/YYYY-MM-DD), so retention removes
whole days. Staging folders hold uploads in flight; a staged ``*.upload``
file nobody has written to for longer than the endpoints' idle timeout
(twice the longest, for clocks and network filesystems) belongs to a
connection that died or a daemon that was killed, and is removed, at start
and then every hour.

Why by age and not by whose it is: daemons may share a source folder (a
shared drop folder keeps ``.staging`` beside it), so another daemon's
transfer may be in flight there. A transfer that is alive writes at least
once per idle timeout, or its endpoint drops the connection (and the staged
file with it), so a file older than that is no one's, whichever daemon, and
whatever version, wrote it. Nothing in the spool, held/ or quarantine/ is
ever touched here.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from daemon.runtime.periodic import Periodic

log = structlog.get_logger(__name__)

STALE_STAGING = timedelta(days=1)


def sweep(archive: Path, staging_folders: Iterable[Path], *, retention_days: int,
          now: datetime, staging_idle: timedelta = STALE_STAGING) -> dict[str, int]:
    """Remove what has expired; returns counts of what was removed."""
    removed = {"archive_days": sweep_archive(archive, retention_days=retention_days, now=now),
               "staging_files": sweep_staging(staging_folders, idle=staging_idle, now=now)}
    return removed


def sweep_archive(archive: Path, *, retention_days: int, now: datetime) -> int:
    removed = 0
    cutoff = (now - timedelta(days=retention_days)).date()
    if archive.is_dir():
        for day in archive.iterdir():
            try:
                when = datetime.strptime(day.name, "%Y-%m-%d").date()
            except ValueError:
                continue  # not ours: leave it
            if day.is_dir() and when < cutoff:
                shutil.rmtree(day, ignore_errors=True)
                removed += 1
    return removed


def sweep_staging(staging_folders: Iterable[Path], *, idle: timedelta, now: datetime) -> int:
    """Remove staged uploads untouched for longer than ``idle``; returns how many."""
    stale_before = (now - idle).timestamp()
    removed = 0
    for folder in staging_folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not path.name.endswith(".upload"):
                continue  # an upload staged by the CLI, or anything not an endpoint's
            try:
                st = path.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_mtime < stale_before:
                    path.unlink()
                    removed += 1
                    log.info("staging_orphan_removed", file=str(path), size=st.st_size,
                             idle_s=round(now.timestamp() - st.st_mtime))
            except FileNotFoundError:
                continue
    return removed


def staging_idle(*idle_timeouts: float) -> timedelta:
    """How long a staged upload is left alone: twice the longest endpoint idle timeout."""
    return timedelta(seconds=2 * max(idle_timeouts, default=STALE_STAGING.total_seconds() / 2))


def janitor(archive: Path, staging_folders: Callable[[], Iterable[Path]], retention_days: int, *,
            leads: Callable[[], bool] = lambda: True, interval: float = 3600.0,
            staging_idle: timedelta = STALE_STAGING) -> Periodic:
    """The sweeps at start and then every ``interval`` seconds, as a runtime service.

    ``leads`` says whether this daemon sweeps the archive now: daemons that
    share a data_dir (a network filesystem) share its archive too, and one of
    them sweeps it (``db.leader.Leadership`` named for the data_dir). Staging
    is swept by every daemon: the age rule is safe whoever runs it, and a
    daemon that restarts after a kill should not wait for the leader.
    """

    def run() -> None:
        now = datetime.now(UTC)
        removed = {"staging_files": sweep_staging(staging_folders(), idle=staging_idle, now=now),
                   "archive_days": sweep_archive(archive, retention_days=retention_days, now=now)
                   if leads() else 0}
        if any(removed.values()):
            log.info("retention_sweep", **removed)

    return Periodic("janitor", interval, run, at_start=True)
