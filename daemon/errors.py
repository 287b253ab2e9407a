"""The error tree. An error's type decides what happens to the work.

- ``ConfigError``: the daemon refuses to start; nothing is half-started.
- ``FeedError``: the file is rejected and quarantined; never retried.
- ``TransientError``: retried later with backoff (an endpoint down, a lock).
- ``UserError``: a CLI call that cannot be carried out; one line on stderr.
- ``ExportError``: a market's file cannot be written as its format asks (the
  listings or the options): nothing is composed, nothing is sent, and each
  run says so until the cause is fixed.
"""

from __future__ import annotations


class StockdropError(Exception):
    """Base class of every error Stockdrop raises on purpose."""


class ConfigError(StockdropError):
    """The configuration is invalid; ``problems`` lists ``(key_path, reason)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems))


class FeedError(StockdropError):
    """A feed file cannot be used as a whole (not a row problem): reject it."""


class TransientError(StockdropError):
    """A failure that may pass on its own: retry later."""


class ExportError(StockdropError):
    """A market's export cannot be written from its listings with its options."""


class UserError(StockdropError):
    """A command-line request that cannot be carried out as asked."""


class NotFound(UserError):
    """A named merchant, source, SKU or upload does not exist."""
