"""What a receiver knows about a file it hands to intake."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Arrival:
    """A complete file, ready to be claimed.

    ``path`` is on the same filesystem as the spool, so the claim is a rename.
    A quantity feed names its inventory source (``source_id``); an order or
    cancellation file names its market (``market_id``) and ``kind``; a
    warehouse's status file names its source and ``kind = "statuses"``.
    """

    path: Path
    source_id: int | None
    original_name: str
    protocol: str  # "ftp", "ftps", "sftp", "watch", "pull", "cli"
    received_at: datetime  # timezone-aware UTC
    user: str | None = None
    remote_addr: str | None = None
    elapsed_s: float | None = None
    market_id: int | None = None
    kind: str = "feed"  # "feed", "orders", "cancellations", "statuses"
    # Someone else may still hold the file open (a watched inbox): it is
    # claimed by copy (``ingest.claim``), and refused unless it is one plain
    # regular file. ``settled`` is the (size, mtime_ns) the watcher saw settle.
    shared: bool = False
    settled: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if (self.source_id is None) == (self.market_id is None):
            raise ValueError("an arrival belongs to exactly one source or one market")
        if self.kind not in ("feed", "orders", "cancellations", "statuses"):
            raise ValueError(f"unknown kind {self.kind!r}")
        if (self.kind in ("feed", "statuses")) != (self.source_id is not None):
            raise ValueError(f"a {self.kind} file belongs to a {'source' if self.market_id is None else 'market'}")

    @property
    def lane(self) -> tuple[str, int]:
        """Files of one lane are processed one at a time, in receive order."""
        if self.market_id is not None:
            return ("m", self.market_id)
        assert self.source_id is not None  # one of the two (__post_init__)
        return ("s", self.source_id)


class Deliver(Protocol):
    """Hands a complete file to intake; returns the upload (history) id."""

    def __call__(self, arrival: Arrival) -> int: ...
