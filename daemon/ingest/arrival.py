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
    ``source_id`` is the database id of the inventory source (or the market
    orders inbox, later) the file belongs to.
    """

    path: Path
    source_id: int
    original_name: str
    protocol: str  # "ftp", "ftps", "sftp", "watch", "pull", "cli"
    received_at: datetime  # timezone-aware UTC
    user: str | None = None
    remote_addr: str | None = None
    elapsed_s: float | None = None


class Deliver(Protocol):
    """Hands a complete file to intake; returns the upload (history) id."""

    def __call__(self, arrival: Arrival) -> int: ...
