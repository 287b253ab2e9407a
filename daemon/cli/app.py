"""What every command shares: settings, the database, the clock, output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import migrate
from daemon.db.engine import make_engine, session_factory
from daemon.errors import UserError
from daemon.settings import Settings, load_settings, session_info


class App:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._on_close: list[Callable[[], None]] = []

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            s = self.settings
            s.data_dir.mkdir(parents=True, exist_ok=True)
            self._engine = make_engine(s.database_url, busy_timeout_ms=s.database.sqlite_busy_timeout_ms,
                                       pool_size=s.database.pool_size)
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on a database whose schema is the code's (else a ``UserError``)."""
        if self._sessions is None:
            migrate.require_head(self.engine)
            self._sessions = session_factory(self.engine, info=session_info(self.settings))
        return self._sessions

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the command ends (parser processes to stop, say)."""
        self._on_close.append(callback)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def close(self) -> None:
        while self._on_close:
            self._on_close.pop()()
        if self._engine is not None:
            self._engine.dispose()


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(to_jsonable(payload), indent=2, ensure_ascii=False))


def table(rows: list[list[str]], headers: list[str]) -> None:
    """A plain aligned table for people; scripts use --json."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def parse_since(value: str | None) -> datetime | None:
    """A --since option: an ISO date or time, UTC unless it names its zone."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--since: not an ISO date or time: {value!r}; give a date (2026-05-01) or a "
                        "time (2026-05-01T08:00, UTC unless it names its zone: 2026-05-01T08:00+02:00)"
                        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
