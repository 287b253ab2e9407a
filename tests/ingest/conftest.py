"""An ingest pipeline on a real database, real folders and the real parser workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import stock as store
from daemon.db import uploads
from daemon.db.catalog import get_source, sync_config
from daemon.db.engine import session_factory
from daemon.db.markets import sync_markets
from daemon.db.models import LedgerEntry
from daemon.ingest.arrival import Arrival
from daemon.ingest.contained import ParserPool
from daemon.ingest.outcomes import Outcome
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.sources import SourceBook
from daemon.settings import Settings, parse_settings, session_info
from tests.conftest import Database


@dataclass
class IngestEnv:
    settings: Settings
    sessions: sessionmaker[Session]
    pipeline: Pipeline
    root: Path

    @property
    def book(self) -> SourceBook:
        return self.pipeline.book

    def source(self, name: str = "wh1"):  # type: ignore[no-untyped-def]
        info = self.book.by_name("acme", name)
        assert info is not None
        return info

    def arrive(self, name: str, content: bytes | str, *, source: str = "wh1",
               protocol: str = "cli", received_at: datetime | None = None) -> int:
        """Hand a complete file to intake, as a receiver does; returns the upload id."""
        info = self.source(source)
        info.staging.mkdir(parents=True, exist_ok=True)
        path = info.staging / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return self.pipeline.deliver(Arrival(path=path, source_id=info.id, original_name=name,
                                             protocol=protocol,
                                             received_at=received_at or datetime.now(UTC)))

    def upload(self, name: str, content: bytes | str, **kw: Any) -> Outcome:
        """Arrive and process synchronously (no worker threads)."""
        return self.pipeline.processor.process(self.arrive(name, content, **kw))

    def quantities(self, source: str = "wh1") -> dict[str, int]:
        with self.sessions() as s:
            return {r.sku: r.quantity for r in store.inventory(s, merchant="acme", source=source)}

    def ledger_count(self) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(LedgerEntry)) or 0

    def show(self, upload_id: int):  # type: ignore[no-untyped-def]
        with self.sessions() as s:
            return uploads.show(s, upload_id)

    def set(self, sku: str, qty: int, source: str = "wh1", at: datetime | None = None) -> None:
        with self.sessions() as s, s.begin():
            store.set_one(s, get_source(s, "acme", source), sku, qty, actor="test",
                          now=at or datetime.now(UTC))


SOURCES = """
[[merchants]]
name = "acme"
timezone = "UTC"

[[merchants.sources]]
name = "wh1"
priority = 10
[merchants.sources.feed]
{feed}

[[merchants.sources]]
name = "wh2"
priority = 20
[merchants.sources.feed]
unknown_sku = "create"
"""


@pytest.fixture(scope="session")
def parsers() -> Iterator[ParserPool]:
    """One warm pool for every test's pipeline: a worker's start-up is paid once."""
    with ParserPool(2) as pool:
        yield pool


@pytest.fixture
def make_env(database: Database, tmp_path: Path, parsers: ParserPool) -> Iterator[Callable[..., IngestEnv]]:
    pipelines: list[Pipeline] = []

    def make(feed: str = "", ingest: str = "", merchant_extra: str = "", node: str | None = None,
             engine: Engine | None = None) -> IngestEnv:
        """An environment; ``node`` makes it another daemon on the same database, with a
        data_dir (spool, archive) of its own."""
        import tomllib

        # These tests bring their own SKUs: wh1 creates them unless a test says otherwise.
        if "unknown_sku" not in feed:
            feed = 'unknown_sku = "create"\n' + feed
        raw = tomllib.loads(f"[ingest]\n{ingest}\n" + SOURCES.format(feed=feed) + merchant_extra)
        raw["database"] = {"url": database.url}
        if node is not None:
            raw["node_id"], raw["data_dir"] = node, f"data-{node}"
        settings = parse_settings(raw, base=tmp_path)
        sessions = session_factory(engine or database.engine, info=session_info(settings))
        with sessions() as s, s.begin():
            sync_config(s, settings, datetime.now(UTC))
            sync_markets(s, settings, datetime.now(UTC))
            book = SourceBook.load(s, settings)
        pipeline = Pipeline(settings, sessions, book, workers=2, parsers=parsers)
        pipelines.append(pipeline)
        return IngestEnv(settings, sessions, pipeline, tmp_path)

    yield make
    for p in pipelines:
        p.dispatcher.stop(10)


@pytest.fixture
def env(make_env: Callable[..., IngestEnv]) -> IngestEnv:
    return make_env()
