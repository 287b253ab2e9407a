"""File names every way in agrees on: what is still being written, what is a marker."""

from __future__ import annotations

# Names clients write under before renaming to the real name (WinSCP .filepart,
# rsync/curl .part, browsers .crdownload, Excel's ~$ lock files, dot files).
TEMP_SUFFIXES = (".tmp", ".part", ".filepart", ".writing", ".partial", ".crdownload")
DONE_SUFFIXES = (".done", ".ok")


def is_temporary(name: str) -> bool:
    lower = name.lower()
    return name.startswith(".") or lower.endswith(TEMP_SUFFIXES) or lower.startswith("~$")


def is_marker(name: str) -> bool:
    """``NAME.done`` / ``NAME.ok``: the optional "NAME is complete" convention."""
    return name.lower().endswith(DONE_SUFFIXES)
