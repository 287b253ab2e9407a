"""Shared fixtures: one test body runs against SQLite and PostgreSQL.

PostgreSQL tests skip where no server answers, unless STOCKDROP_REQUIRE_PG=1
(CI sets it), in which case they fail: CI must never go green by skipping.
"""

from __future__ import annotations

import os
import sqlite3
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


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head; each test gets a copy (the migrations take 0.3 s a run)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "stockdrop.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


def _copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy, WAL included (SQLite's backup API, not a copy of the file)."""
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


class _Schemas:
    """PostgreSQL schemas migrated to head, emptied and handed to the next test.

    A test's schema is emptied (``TRUNCATE ... RESTART IDENTITY``: ids start at
    1 again, as in a new schema) only if it is still exactly the migrated
    schema: same tables, indexes and constraints, at head. One a test changed
    (a downgrade cut short, a table of its own, a first load's rebuild of the
    indexes gone wrong) is dropped, and the next test gets a new one.
    """

    def __init__(self) -> None:
        self.free: list[str] = []
        self.tables: set[str] | None = None
        self.shape: set[str] = set()

    def take(self, admin: Engine) -> str:
        if self.free:
            return self.free.pop()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(_pg_url(schema))
        migrate.upgrade(engine)
        engine.dispose()
        if self.tables is None:
            self.tables, self.shape = self._tables(admin, schema), self._shape(admin, schema)
        return schema

    def give_back(self, admin: Engine, schema: str) -> None:
        try:
            with admin.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                version = conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version')).scalar()
                tables = self._tables(admin, schema)
                if version != migrate.HEAD or tables != self.tables or self._shape(admin, schema) != self.shape:
                    raise LookupError("changed")
                names = ", ".join(f'"{schema}"."{t}"' for t in sorted(tables - {"alembic_version"}))
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            self.free.append(schema)
        except Exception:  # noqa: BLE001 - anything unusual: a new schema next time
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    @staticmethod
    def _tables(admin: Engine, schema: str) -> set[str]:
        with admin.connect() as conn:
            return set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema})
                       .scalars())

    @staticmethod
    def _shape(admin: Engine, schema: str) -> set[str]:
        """The schema's indexes, constraints and sequences' settings, with the schema's name taken out.

        (TRUNCATE ... RESTART IDENTITY restarts a sequence, but keeps an
        increment a test changed.)
        """
        with admin.connect() as conn:
            return set(conn.execute(text(
                "SELECT tablename || ' ' || replace(indexdef, :q, '') FROM pg_indexes WHERE schemaname = :s "
                "UNION ALL SELECT conname || ' ' || convalidated::text || ' ' || replace(pg_get_constraintdef(oid), :q, '') "
                "FROM pg_constraint WHERE connamespace = CAST(:s AS regnamespace) "
                "UNION ALL SELECT concat_ws(' ', sequencename, data_type, start_value, min_value, max_value, "
                "increment_by, cycle, cache_size) FROM pg_sequences WHERE schemaname = :s"),
                {"s": schema, "q": f"{schema}."}).scalars())

    def drop_all(self, admin: Engine) -> None:
        with admin.begin() as conn:
            for schema in self.free:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        self.free.clear()


def _pg_url(schema: str) -> str:
    # Each test gets its own schema, found through search_path.
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def _pg_schemas() -> Iterator[_Schemas]:
    schemas = _Schemas()
    yield schemas
    if schemas.free:
        admin = create_engine(PG_URL)
        schemas.drop_all(admin)
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of each kind, migrated to head."""
    if request.param == "sqlite":
        path = tmp_path / "stockdrop.db"
        _copy_sqlite(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        yield Database("sqlite", url, engine)
        engine.dispose()
        return
    need_pg()
    schemas: _Schemas = request.getfixturevalue("_pg_schemas")
    admin = create_engine(PG_URL)
    schema = schemas.take(admin)
    url = _pg_url(schema)
    engine = make_engine(url)
    try:
        yield Database("postgresql", url, engine)
    finally:
        engine.dispose()
        schemas.give_back(admin, schema)
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
