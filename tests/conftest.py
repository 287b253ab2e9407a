"""Shared fixtures: one test body runs against SQLite and PostgreSQL.

PostgreSQL tests skip where no server answers, unless STOCKDROP_REQUIRE_PG=1
(CI sets it), in which case they fail: CI must never go green by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from daemon.auth.hostkey import load_or_create_host_key
from daemon.db import migrate
from daemon.db.engine import make_engine
from tests.remote_sftp import OpenServer

PG_URL = os.environ.get("STOCKDROP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("STOCKDROP_REQUIRE_PG") == "1"

_pg_state: dict[str, str | None] = {}


def _pg_problem() -> str | None:
    """None when PostgreSQL answers; else why not. Asked once per session."""
    if "problem" not in _pg_state:
        try:
            engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["problem"] = None
        except Exception as exc:  # noqa: BLE001 - any failure means "not here"
            _pg_state["problem"] = f"PostgreSQL at {PG_URL} is not reachable: {exc}"
    return _pg_state["problem"]


def need_pg() -> None:
    problem = _pg_problem()
    if problem is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"STOCKDROP_REQUIRE_PG=1 but {problem}")
    pytest.skip(problem)


@dataclass
class Database:
    kind: str
    url: str  # for a config file: [database] url
    engine: Engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of each kind, migrated to head."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stockdrop.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        yield Database("sqlite", url, engine)
        engine.dispose()
        return
    need_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # Each test gets its own schema, found through search_path.
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    try:
        yield Database("postgresql", url, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[OpenServer]:
    """Another machine's SFTP server (tests/remote_sftp.py), served from ``tmp_path / "remote"``,
    which holds an empty folder "drop": a warehouse's for pulls, a market's for exports."""
    root = tmp_path / "remote"
    (root / "drop").mkdir(parents=True)
    server = OpenServer(root, load_or_create_host_key(tmp_path / "open-host-key"))
    server.serve()
    yield server
    server.close()
