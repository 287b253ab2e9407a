"""A merchant with a history made the real way, for the digest tests.

Files go through the real pipeline (intake, the parser process, the
apply); order files through the market's own lane; exports through the
real exporter to a folder (and to one that is down). Nothing is written
into the history by hand, so every figure a digest shows comes from rows
the daemon itself wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import email as db_email
from daemon.db.engine import session_factory
from daemon.db.markets import get_market, import_listing_rows
from daemon.db.models import DigestMark, Upload
from daemon.db.sync import sync_with_config
from daemon.export.service import Exporter, ExportTarget
from daemon.ingest.arrival import Arrival
from daemon.ingest.contained import ParserPool
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.sources import SourceBook
from daemon.reports.digest import Digests
from daemon.reports.outbox import Mailer
from daemon.settings import Settings, parse_settings
from tests.conftest import Database
from tests.export.test_exports import Flaky
from tests.reports.conftest import SmtpServer


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def digest_settings(tmp: Path, database: Database, server: SmtpServer, **reports: Any) -> Settings:
    raw = {
        "database": {"url": database.url},
        "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none",
                 "from_address": "stockdrop@example.com", "tries": 1},
        "reports": {"digest_at": "07:00", **reports},
        "merchants": [{
            "name": "acme", "timezone": "Europe/Berlin", "report_recipients": ["buyer@acme.example"],
            "sources": [
                {"name": "wh1", "feed": {"unknown_sku": "create"}},
                {"name": "wh2", "feed": {"unknown_sku": "create", "scope": "full"}},
                {"name": "wh3", "feed": {"unknown_sku": "create"}, "report_recipients": ["ops@3pl.example"]},
            ],
            "markets": [
                {"name": "amz", "kind": "amazon",
                 "export": {"folder": str(tmp / "out-amz"), "format": "amazon_price_quantity"}},
                {"name": "shop", "kind": "generic", "export": {"folder": str(tmp / "out-shop"), "format": "csv",
                                                                "failing_after": 2}},
            ],
        }],
    }
    return parse_settings(raw, base=tmp)


class DigestWorld:
    def __init__(self, settings: Settings, database: Database, parsers: ParserPool, clock: Clock) -> None:
        self.settings, self.clock, self.tmp = settings, clock, settings.data_dir.parent
        self.sessions: sessionmaker[Session] = session_factory(database.engine)
        with self.sessions() as s, s.begin():
            sync_with_config(s, settings, clock())
            book = SourceBook.load(s, settings)
        self.pipeline = Pipeline(settings, self.sessions, book, workers=1, parsers=parsers, clock=clock)
        assert settings.smtp is not None
        self.mailer = Mailer(self.sessions, settings.smtp, node="n1", sleep=lambda s: None)

    def digests(self, **kw: Any) -> Digests:
        kw.setdefault("now", self.clock)
        return Digests(self.sessions, self.settings, **kw)

    def upload(self, name: str, content: str, source: str = "wh1", *, at: datetime | None = None) -> int:
        info = self.pipeline.book.by_name("acme", source)
        assert info is not None
        info.staging.mkdir(parents=True, exist_ok=True)
        (info.staging / name).write_text(content)
        upload_id = self.pipeline.deliver(Arrival(path=info.staging / name, source_id=info.id, original_name=name,
                                                  protocol="ftp", user=source, received_at=at or self.clock()))
        self.pipeline.processor.process(upload_id)
        return upload_id

    def orders(self, name: str, lines: str, market: str = "shop") -> int:
        inbox = self.pipeline.book.market_by_name("acme", market)
        assert inbox is not None
        inbox.staging.mkdir(parents=True, exist_ok=True)
        (inbox.staging / name).write_text("order_id,line_id,sku,quantity,ordered_at\n" + lines)
        upload_id = self.pipeline.deliver(Arrival(path=inbox.staging / name, source_id=None, market_id=inbox.id,
                                                  kind="orders", original_name=name, protocol="sftp",
                                                  received_at=self.clock()))
        self.pipeline.processor.process(upload_id)
        return upload_id

    def list_skus(self, skus: list[str]) -> None:
        with self.sessions() as s, s.begin():
            for market in ("amz", "shop"):
                import_listing_rows(s, get_market(s, "acme", market), [(sku, 0) for sku in skus],
                                    now=self.clock(), actor="test")

    def export(self, market: str, *, down: int = 0) -> list[Any]:
        target = next(ExportTarget(m, k, e) for m, k, e in self.settings.export_targets() if k == market)
        kw: dict[str, Any] = {"sleep": lambda seconds: None}
        if down:
            flaky = Flaky(self.tmp / f"out-{market}", down=down)
            kw["destinations"] = lambda settings: flaky
        return Exporter(self.sessions, [target], **kw).export_now(target.key, "delta")

    def status(self, upload_id: int) -> str:
        with self.sessions() as s:
            upload = s.get(Upload, upload_id)
            assert upload is not None
            return upload.status

    def outbox(self, kind: str = "digest") -> list[db_email.EmailRow]:
        with self.sessions() as s:
            return list(reversed(db_email.list_emails(s, kind=kind)))

    def mark(self) -> datetime | None:
        with self.sessions() as s:
            return s.scalar(select(DigestMark.covered_until))


def make_digest_world(tmp_path: Path, database: Database, parsers: ParserPool,
                      start_smtp: Callable[..., SmtpServer], clock: Clock | None = None,
                      **reports: Any) -> tuple[DigestWorld, SmtpServer]:
    server = start_smtp()
    world = DigestWorld(digest_settings(tmp_path, database, server, **reports), database, parsers, clock or Clock())
    return world, server
