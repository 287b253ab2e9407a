from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.ingest.retention import staging_idle, sweep, sweep_staging
from tests.ingest.conftest import IngestEnv


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_archived_days_past_retention_are_removed_and_newer_ones_kept(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    for day in ("2026-08-01", "2026-11-20", "2026-11-29", "notes"):
        (archive / day).mkdir(parents=True)
        (archive / day / "f.csv").write_text("x")
    removed = sweep(archive, [], retention_days=30, now=datetime(2026, 11, 29, 12, tzinfo=UTC))
    assert removed["archive_days"] == 1
    assert sorted(p.name for p in archive.iterdir()) == ["2026-11-20", "2026-11-29", "notes"]


def test_abandoned_partial_uploads_are_swept_but_fresh_ones_stay(tmp_path: Path) -> None:
    staging = tmp_path / ".staging"
    staging.mkdir()
    old, fresh = staging / "a.upload", staging / "b.upload"
    old.write_text("partial")
    fresh.write_text("in flight")
    _age(old, 2 * 86400)
    removed = sweep(tmp_path / "archive", [staging], retention_days=90, now=datetime.now(UTC))
    assert removed["staging_files"] == 1
    assert not old.exists() and fresh.exists()


def test_staging_files_older_than_the_idle_bound_go_and_a_transfer_in_flight_stays(tmp_path: Path) -> None:
    """Defect 10: an orphan from a killed upload; beside it, another daemon's upload in flight."""
    staging = tmp_path / "shared-drop" / ".staging"
    staging.mkdir(parents=True)
    orphan, in_flight = staging / "0a1b.upload", staging / "2c3d.upload"
    cli, other = staging / ".cli-20261203-stock.csv", staging / "notes.txt"
    for path in (orphan, in_flight, cli, other):
        path.write_bytes(b"x" * 1000)
    for path in (orphan, cli, other):
        _age(path, 11 * 60)
    _age(in_flight, 9 * 60)
    idle = staging_idle(300, 120)
    assert idle == timedelta(seconds=600)
    assert sweep_staging([staging], idle=idle, now=datetime.now(UTC)) == 1
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        p.name for p in (in_flight, cli, other))


def test_the_pipelines_janitor_removes_orphan_staging_files_at_start_even_when_not_leading(
        env: IngestEnv) -> None:
    staging = env.source().staging
    staging.mkdir(parents=True, exist_ok=True)
    orphan, fresh = staging / "dead.upload", staging / "live.upload"
    orphan.write_bytes(b"half a feed")
    fresh.write_bytes(b"half a feed")
    # The listeners' idle timeouts are 300 s by default: the bound is 600 s.
    _age(orphan, 601 + 60)
    _age(fresh, 300)
    sweeper = env.pipeline.services(leads=lambda work: lambda: False)[-1]
    sweeper.run_once()
    assert not orphan.exists() and fresh.exists()
