"""The source folder as a remote user sees it, shared by the FTP and SFTP receivers.

The user sees ``/`` = the source folder, holding ``/inbox`` (uploads) and
``/results`` (files the sender downloads). Every client path goes through
:meth:`Jail.resolve`, which canonicalises it (``..``, absolute paths,
symlinks) and refuses anything else. Uploads are written under
``<root>/.staging/`` (never listed) and only reach the inbox or intake once
complete; this module also holds that last step, so both protocols follow the
same publish/deliver rules.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

import structlog

from daemon.ingest.arrival import Arrival
from daemon.ingest.names import is_temporary

log = structlog.get_logger(__name__)

INBOX = "inbox"
RESULTS = "results"
STAGING = ".staging"
# One rule for every way in: a name the watcher waits on is one the endpoints publish.
is_temp_name = is_temporary


class Area(Enum):
    ROOT = "root"
    INBOX = INBOX
    RESULTS = RESULTS


class JailError(Exception):
    """A path the user may not touch; the message is safe to show the client."""


@dataclass(frozen=True)
class Target:
    """A resolved client path: a folder (``name is None``) or a file in one."""

    area: Area
    virtual: str  # canonical path as the client sees it, e.g. "/inbox/a.csv"
    real: Path
    name: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.name is None


class Jail:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.inbox = self.root / INBOX
        self.results = self.root / RESULTS
        self.staging = self.root / STAGING

    def ensure_folders(self) -> None:
        for folder in (self.inbox, self.results, self.staging):
            # never parents=True: a missing source folder is a configuration error,
            # not something a login should quietly create somewhere
            folder.mkdir(exist_ok=True)

    # --- paths

    @staticmethod
    def normalize(path: str, cwd: str = "/") -> str:
        """Canonical absolute client path; ``..`` never climbs above ``/``."""
        if any(ord(c) < 32 for c in path) or "\x7f" in path:
            raise JailError("control characters are not allowed in names")
        joined = posixpath.join(cwd or "/", path or ".")
        # normpath keeps a leading "//"; collapse it so "/" is the only root
        norm = posixpath.normpath("/" + joined.lstrip("/"))
        return norm

    def resolve(self, path: str, cwd: str = "/") -> Target:
        virtual = self.normalize(path, cwd)
        parts = [p for p in virtual.split("/") if p]
        if not parts:
            return Target(Area.ROOT, "/", self.root)
        if parts[0] not in (INBOX, RESULTS) or len(parts) > 2:
            raise JailError(f"{virtual}: only /inbox and /results are available")
        area = Area(parts[0])
        folder = self.inbox if area is Area.INBOX else self.results
        self._check_inside(folder, self.root)
        if len(parts) == 1:
            return Target(area, virtual, folder)
        name = parts[1]
        real = folder / name
        # a symlink placed in the folder must not lead anywhere else
        self._check_inside(real, folder)
        return Target(area, virtual, real, name)

    @staticmethod
    def _check_inside(path: Path, parent: Path) -> None:
        real = os.path.realpath(path)
        real_parent = os.path.realpath(parent)
        if real != real_parent and not real.startswith(real_parent + os.sep):
            raise JailError("that path leads outside your folder")

    def listing(self, target: Target) -> list[str]:
        """Names visible in a folder: the two areas at the top, regular files inside."""
        if target.area is Area.ROOT:
            return [INBOX, RESULTS]
        names: list[str] = []
        try:
            with os.scandir(target.real) as entries:
                for entry in entries:
                    # symlinks and sub-folders are never shown (nor reachable)
                    if entry.is_file(follow_symlinks=False):
                        names.append(entry.name)
        except FileNotFoundError:
            pass
        return sorted(names)

    def is_regular_file(self, target: Target) -> bool:
        return target.name is not None and target.real.is_file() and not target.real.is_symlink()

    # --- staging

    def new_staging_file(self) -> tuple[Path, int]:
        """A fresh, private staging file: (path, writable fd)."""
        self.staging.mkdir(exist_ok=True)
        path = self.staging / f"{secrets.token_hex(8)}.upload"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        return path, fd

    def publish(self, staged: Path, name: str) -> Path:
        """Show a finished temp-named upload in the inbox (same filesystem: a rename)."""
        dest = self.inbox / name
        os.replace(staged, dest)
        return dest


def discard(path: Path | None) -> None:
    """Remove an incomplete upload; gone already is fine."""
    if path is None:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # never let cleanup take a connection down
        log.warning("upload_discard_failed", path=str(path), error=str(exc))


@dataclass(frozen=True)
class Sender:
    """Who an upload came from (what an Arrival records beyond the file)."""

    source_id: int | None
    user: str
    remote_addr: str
    protocol: str
    market_id: int | None = None
    kind: str = "feed"


def hand_over(
    deliver: Callable[[Arrival], int],
    sender: Sender,
    path: Path,
    name: str,
    started: float | None,
) -> int:
    """Give a complete file to intake. ``started`` is a ``time.monotonic()`` stamp
    of when the transfer began (None when there was no transfer, e.g. a rename).

    Exceptions propagate: the caller tells the client the file was not taken.
    """
    arrival = Arrival(
        path=path,
        source_id=sender.source_id,
        market_id=sender.market_id,
        kind=sender.kind,
        original_name=name,
        protocol=sender.protocol,
        received_at=datetime.now(UTC),
        user=sender.user,
        remote_addr=sender.remote_addr,
        elapsed_s=None if started is None else round(time.monotonic() - started, 3),
    )
    upload_id = deliver(arrival)
    log.info(
        "upload_delivered", protocol=sender.protocol, user=sender.user,
        remote_addr=sender.remote_addr, source_id=sender.source_id,
        name=name, upload_id=upload_id,
    )
    return upload_id


def finish_upload(
    jail: Jail,
    deliver: Callable[[Arrival], int],
    sender: Sender,
    staged: Path,
    name: str,
    started: float,
) -> str:
    """A complete upload: publish temp names into the inbox, deliver the rest.

    Returns a short sentence for the client's success reply.
    """
    if is_temp_name(name):
        jail.publish(staged, name)
        return f"kept as /inbox/{name} until renamed"
    hand_over(deliver, sender, staged, name, started)
    return "file received"


def take_on_rename(
    jail: Jail,
    deliver: Callable[[Arrival], int],
    sender: Sender,
    src: Target,
    dst: Target,
) -> str:
    """RNFR/RNTO or SFTP rename inside the inbox.

    A temp name renamed to a final name is the moment the file is taken: it is
    handed to intake from its temp path and never shows under its final name,
    so no folder watcher can race us. Other renames are plain renames.
    """
    assert src.name is not None and dst.name is not None
    if is_temp_name(src.name) and not is_temp_name(dst.name):
        hand_over(deliver, sender, src.real, dst.name, None)
        return "file received"
    os.replace(src.real, dst.real)
    return "renamed"
