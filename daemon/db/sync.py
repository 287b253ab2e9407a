"""Keep the database in step with the configuration: merchants, sources, markets, order rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from daemon.db.catalog import MerchantSpec, sync_config
from daemon.db.markets import MerchantMarkets, sync_markets


class Merchant(MerchantSpec, MerchantMarkets, Protocol):
    """A configured merchant: its sources, its markets and order rules."""


class FullConfig(Protocol):
    """The configuration as the database keeps it (``settings.Settings`` fits)."""

    @property
    def merchants(self) -> Sequence[Merchant]: ...


def sync_with_config(session: Session, settings: FullConfig, now: datetime) -> None:
    """Create or update what the config names; nothing is deleted (see ``sync_config``)."""
    sync_config(session, settings, now)
    sync_markets(session, settings, now)
