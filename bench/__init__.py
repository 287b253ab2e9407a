"""Benchmarks: each prints a ratio against a ceiling measured in the same run."""

import os

# polars writes its own allocator settings into the environment when it is
# imported, and the benchmarks import it. The daemon processes they start
# must see the environment as systemd would give it, so keep the original.
ORIGINAL_ALLOCATOR_CONF = os.environ.get("_RJEM_MALLOC_CONF")
