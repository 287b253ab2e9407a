"""The folders a file moves through after it is complete.

    spool/       claimed, not yet finished (processed again after a crash)
    held/        full feeds waiting for `history approve` or `history reject`
    archive/D/   applied (or duplicate) originals, one folder a day
    quarantine/  rejected originals

Every move is a rename on one filesystem, so a file is always in exactly one
place. A drop folder on another filesystem is copied, synced and then renamed.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from daemon.inventory.uploads import UploadStatus


@dataclass(frozen=True)
class SpoolDirs:
    root: Path

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def held(self) -> Path:
        return self.root / "held"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def archive(self, when: datetime) -> Path:
        return self.root / "archive" / when.strftime("%Y-%m-%d")

    def kept(self, status: str, when: datetime) -> Path:
        """Where a finished upload's original goes: held/, quarantine/ or the day's archive."""
        if status == UploadStatus.HELD:
            return self.held
        if status == UploadStatus.REJECTED:
            return self.quarantine
        return self.archive(when)

    def create(self) -> None:
        for path in (self.spool, self.held, self.quarantine, self.root / "archive"):
            path.mkdir(parents=True, exist_ok=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move(src: Path, dst: Path) -> None:
    """Move atomically; across filesystems copy to a temporary name first."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.copying")
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1024 * 1024)
            fout.flush()
            os.fsync(fout.fileno())
        os.rename(tmp, dst)
        os.unlink(src)
    fsync_dir(dst.parent)
