from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.ingest.retention import sweep


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
