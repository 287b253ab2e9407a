"""The sources and markets the daemon serves, with their settings and folders, by database id.

Sources come from the config only. Markets come from the config and from
``stockdrop market add``, so the daemon looks for new ones while it runs
(``book_refresher``) and starts watching their folders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker

from daemon.db.catalog import source_ids
from daemon.db.markets import market_ids
from daemon.runtime.periodic import Periodic
from daemon.settings import MerchantSettings, Settings, SourceSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SourceInfo:
    id: int
    merchant_id: int
    merchant: MerchantSettings
    settings: SourceSettings
    folder: Path  # holds inbox/ and results/ (and the receivers' hidden staging)
    inbox: Path
    results: Path
    # A warehouse sent order files gets its status files here, in statuses/{inbox,results}
    # (and statuses/.staging): a folder of its own, like a market's orders/.
    statuses: Path | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def label(self) -> str:
        return f"{self.merchant.name}/{self.settings.name}"

    @property
    def staging(self) -> Path:
        """Hidden from the jail and the watcher: partial uploads live here."""
        return self.folder / ".staging"

    def kind_folder(self, kind: str) -> Path:
        """The folder a login of ``kind`` is jailed to: the source's own, or its statuses/."""
        if kind == "feed":
            return self.folder
        if kind == "statuses" and self.statuses is not None:
            return self.statuses
        raise ValueError(f"source {self.label} has no {kind} folder"
                         + (" (it has no [orders_export])" if kind == "statuses" else ""))

    def results_for(self, kind: str) -> Path:
        return self.kind_folder(kind) / "results"


MARKET_KINDS = ("orders", "cancellations")


@dataclass(frozen=True)
class MarketInbox:
    """A market's drop folders. Order files and cancellation files each have a
    folder laid out like a source's (``inbox/``, ``results/``), so the same
    jail serves them over FTP and SFTP:

        markets/<merchant>/<market>/orders/{inbox,results}
        markets/<merchant>/<market>/cancellations/{inbox,results}
    """

    id: int
    merchant_id: int
    merchant: MerchantSettings
    name: str
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.merchant.name}/market:{self.name}"

    def kind_folder(self, kind: str) -> Path:
        if kind not in MARKET_KINDS:
            raise ValueError(f"a market folder is for orders or cancellations, not {kind!r}")
        return self.folder / kind

    @property
    def orders(self) -> Path:
        return self.kind_folder("orders") / "inbox"

    @property
    def cancellations(self) -> Path:
        return self.kind_folder("cancellations") / "inbox"

    def results(self, kind: str) -> Path:
        return self.kind_folder(kind) / "results"

    @property
    def staging(self) -> Path:
        return self.folder / ".staging"

    def inbox(self, kind: str) -> Path:
        return self.kind_folder(kind) / "inbox"


@dataclass(frozen=True)
class Inbox:
    """One watched folder and what arrives through it."""

    path: Path
    source_id: int | None = None
    market_id: int | None = None
    kind: str = "feed"


class SourceBook:
    def __init__(self, sources: list[SourceInfo], markets: list[MarketInbox] | None = None) -> None:
        self._by_id = {s.id: s for s in sources}
        # Replaced, never changed in place: readers on other threads iterate it.
        self.markets = {m.id: m for m in markets or []}

    @classmethod
    def load(cls, session: Session, settings: Settings) -> SourceBook:
        found = []
        for m in settings.merchants:
            for s in m.all_sources():
                ids = source_ids(session, m.name, s.name)
                if ids is None:
                    continue  # not synced yet; `db upgrade` / `run` sync first
                found.append(SourceInfo(
                    id=ids[0], merchant_id=ids[1], merchant=m, settings=s,
                    folder=settings.source_folder(m.name, s), inbox=settings.inbox(m.name, s),
                    results=settings.results(m.name, s),
                    statuses=settings.statuses_folder(m.name, s) if s.orders_export is not None else None,
                ))
        return cls(found, _markets(session, settings))

    def add_markets(self, session: Session, settings: Settings) -> list[MarketInbox]:
        """Markets added to the database since the book was loaded (``market add``)."""
        new = [m for m in _markets(session, settings) if m.id not in self.markets]
        if new:
            self.markets = {**self.markets, **{m.id: m for m in new}}
        return new

    def inboxes(self) -> list[Inbox]:
        """Every folder the watcher serves."""
        out = [Inbox(s.inbox, source_id=s.id) for s in self._by_id.values()]
        out.extend(Inbox(s.statuses / "inbox", source_id=s.id, kind="statuses")
                   for s in self._by_id.values() if s.statuses is not None)
        for m in self.markets.values():
            out.extend(market_inboxes(m))
        return out

    @property
    def staging_folders(self) -> list[Path]:
        return ([s.staging for s in self] + [s.statuses / ".staging" for s in self if s.statuses is not None]
                + [m.staging for m in self.markets.values()])

    # -- where an account's files go (the endpoints' authenticator asks) ---------

    def source_root(self, source_id: int, kind: str = "feed") -> Path | None:
        info = self.get(source_id)
        if info is None or (kind == "statuses" and info.statuses is None):
            return None
        return info.kind_folder(kind)

    def market_root(self, market_id: int, kind: str) -> Path | None:
        market = self.market(market_id)
        return market.kind_folder(kind) if market is not None else None

    def market(self, market_id: int) -> MarketInbox | None:
        return self.markets.get(market_id)

    def market_by_name(self, merchant: str, name: str) -> MarketInbox | None:
        for m in self.markets.values():
            if m.merchant.name == merchant and m.name == name:
                return m
        return None

    def __iter__(self) -> Iterator[SourceInfo]:
        return iter(self._by_id.values())

    def get(self, source_id: int) -> SourceInfo | None:
        return self._by_id.get(source_id)

    def by_name(self, merchant: str, source: str) -> SourceInfo | None:
        for info in self._by_id.values():
            if info.merchant.name == merchant and info.settings.name == source:
                return info
        return None

    def in_merchant(self, merchant_id: int) -> list[SourceInfo]:
        return [s for s in self._by_id.values() if s.merchant_id == merchant_id]


def market_inboxes(market: MarketInbox) -> list[Inbox]:
    return [Inbox(market.inbox(kind), market_id=market.id, kind=kind) for kind in MARKET_KINDS]


def _markets(session: Session, settings: Settings) -> list[MarketInbox]:
    # Markets come from the config and from `market add`: read the database.
    return [MarketInbox(id=market_id, merchant_id=merchant_id, merchant=m, name=name,
                        folder=settings.data_dir / "markets" / m.name / name)
            for m in settings.merchants for market_id, merchant_id, name in market_ids(session, m.name)]


def book_refresher(book: SourceBook, sessions: sessionmaker[Session], settings: Settings, *,
                   on_new: Callable[[list[Inbox]], None], interval: float = 5.0) -> Periodic:
    """Picks up markets added while the daemon runs, every ``interval`` seconds.

    A new market's folders are made and handed to ``on_new`` (the watcher),
    and its accounts can log in from then on.
    """

    def refresh() -> None:
        with sessions() as session:
            new = book.add_markets(session, settings)
        for m in new:
            for kind in MARKET_KINDS:
                m.inbox(kind).mkdir(parents=True, exist_ok=True)
                m.results(kind).mkdir(parents=True, exist_ok=True)
            log.info("market_added", merchant=m.merchant.name, market=m.name)
        if new:
            on_new([inbox for m in new for inbox in market_inboxes(m)])

    return Periodic("markets", interval, refresh)
