"""A destination that is a folder on this machine: for markets whose feeds a local
tool picks up (a mounted share, a sync client's folder), and for the demo.

Delivery follows ``destination.py``: the bytes go to "<name>.part" in the folder,
are flushed to disk, and the ``.part`` is renamed over the final name with
``os.replace`` (atomic on one filesystem: a reader sees the old file or the new
one, never none); the folder itself is then synced so the rename survives a
crash. The done-marker, if asked for, is delivered the same way after the file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from daemon.transports import TransportError
from daemon.transports.destination import PART_SUFFIX


def _check_name(name: str) -> None:
    """A delivered name is one plain file name in the folder: no path, no control characters."""
    if not name or name in (".", "..") or any(c in "/\\" or c < " " for c in name):
        raise ValueError(f"not a plain file name: {name!r}")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@dataclass(frozen=True)
class FolderDestination:
    """Deliver into ``path`` (created with its parents when missing)."""

    path: Path

    def describe(self) -> str:
        return str(self.path)

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        _check_name(name)
        if done_marker is not None:
            _check_name(done_marker)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"cannot create the folder {self.path}: {_why(exc)}") from exc
        self._put(name, data)
        if done_marker is not None:
            self._put(done_marker, b"")

    def _put(self, name: str, data: bytes) -> None:
        part = self.path / (name + PART_SUFFIX)
        final = self.path / name
        try:
            with open(part, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
                written = os.fstat(out.fileno()).st_size
        except OSError as exc:
            self._discard(part)
            raise TransportError(f"cannot write {part}: {_why(exc)}") from exc
        if written != len(data):  # cannot happen on a sane filesystem; checked as on a server
            self._discard(part)
            raise TransportError(f"{part} holds {written} bytes after writing {len(data)}")
        try:
            os.replace(part, final)
        except OSError as exc:
            self._discard(part)
            raise TransportError(f"cannot rename {part} to {final.name}: {_why(exc)}") from exc
        self._sync_folder()

    def _sync_folder(self) -> None:
        """Make the rename durable: a directory's entries are synced through its own fd."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise TransportError(f"cannot open the folder {self.path} to sync it: {_why(exc)}") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise TransportError(f"cannot sync the folder {self.path}: {_why(exc)}") from exc
        finally:
            os.close(fd)

    @staticmethod
    def _discard(part: Path) -> None:
        with contextlib.suppress(OSError):
            part.unlink()
