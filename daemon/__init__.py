"""Stockdrop: a file-drop inventory integration daemon."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# polars' jemalloc keeps freed pages for a while (polars sets a decay of
# 0.5 s dirty, 1 s muzzy), so right after a million-row feed the daemon
# still sits on hundreds of MB it no longer uses, and a file arriving then
# stacks its own peak on top: 640 MB for the bench's two feeds instead of
# 515. Returning pages at once measured no slower (``python -m bench
# ingest``). jemalloc reads this once, when polars loads; polars appends the
# environment's value to its own, so it wins. It is set here, before any
# module of ours imports polars; an operator's own value wins over ours.
ALLOCATOR_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_CONF)
