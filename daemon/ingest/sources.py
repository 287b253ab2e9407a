"""The sources the daemon serves, with their settings and folders, by database id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Merchant, Source
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


class SourceBook:
    def __init__(self, sources: list[SourceInfo]) -> None:
        self._by_id = {s.id: s for s in sources}

    @classmethod
    def load(cls, session: Session, settings: Settings) -> SourceBook:
        found = []
        for m in settings.merchants:
            for s in m.all_sources():
                row = session.execute(
                    select(Source.id, Source.merchant_id).join(Merchant)
                    .where(Merchant.name == m.name, Source.name == s.name)
                ).first()
                if row is None:
                    continue  # not synced yet; `db upgrade` / `run` sync first
                found.append(SourceInfo(
                    id=row.id, merchant_id=row.merchant_id, merchant=m, settings=s,
                    folder=settings.source_folder(m.name, s), inbox=settings.inbox(m.name, s),
                    results=settings.results(m.name, s),
                ))
        return cls(found)

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
