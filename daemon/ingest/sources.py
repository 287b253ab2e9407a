"""The sources the daemon serves, with their settings and folders, by database id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from daemon.db.catalog import source_ids
from daemon.db.markets import market_ids
from daemon.settings import MerchantSettings, Settings, SourceSettings


@dataclass(frozen=True)
class SourceInfo:
    id: int
    merchant_id: int
    merchant: MerchantSettings
    settings: SourceSettings
    folder: Path  # holds inbox/ and results/ (and the receivers' hidden staging)
    inbox: Path
    results: Path

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
                ))
        markets = []
        for m in settings.merchants:
            # Markets come from the config and from `market add`: read the database.
            for market_id, merchant_id, name in market_ids(session, m.name):
                markets.append(MarketInbox(id=market_id, merchant_id=merchant_id, merchant=m,
                                           name=name, folder=settings.data_dir / "markets" / m.name / name))
        return cls(found, markets)

    def inboxes(self) -> list[Inbox]:
        """Every folder the watcher serves."""
        out = [Inbox(s.inbox, source_id=s.id) for s in self._by_id.values()]
        for m in self.markets.values():
            out.append(Inbox(m.orders, market_id=m.id, kind="orders"))
            out.append(Inbox(m.cancellations, market_id=m.id, kind="cancellations"))
        return out

    def market(self, market_id: int) -> MarketInbox | None:
        return self.markets.get(market_id)

    def market_by_name(self, merchant: str, name: str) -> MarketInbox | None:
        for m in self.markets.values():
            if m.merchant.name == merchant and m.name == name:
                return m
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
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
