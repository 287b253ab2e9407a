"""Keep the database in step with the configuration: merchants, sources, markets, order rules."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from daemon.db.catalog import Config, sync_config
from daemon.db.markets import MarketsConfig, sync_markets


class FullConfig(Config, MarketsConfig, Protocol):
    """The configuration as the database keeps it (``settings.Settings`` fits)."""


def sync_with_config(session: Session, settings: FullConfig, now: datetime) -> None:
    """Create or update what the config names; nothing is deleted (see ``sync_config``)."""
    sync_config(session, settings, now)
    sync_markets(session, settings, now)
