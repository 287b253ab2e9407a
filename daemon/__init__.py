"""Stockdrop: a file-drop inventory integration daemon."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# polars' jemalloc keeps freed pages for about ten seconds by default, so
# after a million-row feed the daemon (and each parser worker, which
# inherits this) would sit on hundreds of MB it no longer uses, and the
# next big file would stack its own peak on top. Returning pages at once
# measured no slower on a whole apply (``python -m bench ingest``).
# jemalloc reads this once, when polars is first loaded: it is set here,
# before any module of ours imports polars. An operator's own value wins.
ALLOCATOR_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_CONF)
