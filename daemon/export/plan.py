"""What an export carries, and what its file is called. Pure: frames and values in, out.

A delta holds exactly the listings whose quantity now differs from the one
last delivered to the market (never delivered counts as different); a full
feed holds every listing. Both against ``db.market_lines``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

import polars as pl

Kind = Literal["delta", "full"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def select_lines(lines: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """The lines an export of ``kind`` sends, in the order they were given (by SKU)."""
    if kind == "full":
        return lines
    return lines.filter(pl.col("last_sent").is_null() | (pl.col("quantity") != pl.col("last_sent")))


def file_name(pattern: str, *, market: str, kind: Kind, now: datetime, delivery: int, ext: str) -> str:
    """The delivery's file name from the market's pattern.

    ``{delivery}`` (the export's number) makes it unique per delivery, so a
    resend after a crash reuses the same name and a new delivery never
    overwrites an older one the market has not read yet. A slash, or
    anything else that is not a safe file-name character, becomes ``_``.
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = pattern.format(market=market, kind=kind, timestamp=stamp, delivery=delivery, ext=ext)
    return _UNSAFE.sub("_", name)


def marker_name(pattern: str | None, name: str) -> str | None:
    return None if pattern is None else _UNSAFE.sub("_", pattern.format(name=name))
