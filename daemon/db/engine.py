"""Engines and sessions. SQLite runs in WAL mode with a busy timeout.

Most commits may be lost by an OS crash (never by a daemon crash): on SQLite
``synchronous=NORMAL`` in WAL mode, which keeps a million-row apply from
waiting on an fsync per checkpoint. A transaction whose commit tells a sender
"received" must survive an OS crash too: ``durable(session)`` makes that one
commit wait for the disk (``synchronous=FULL``; on PostgreSQL
``synchronous_commit`` on, whatever the server's default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Registers the flush listener that bumps sources.stock_version on every ORM
# write of stock: whoever makes a session has it.
from daemon.db import listings_version, stock_version  # noqa: F401


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 5) -> Engine:
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            # Threads (workers, receivers) share the pool; SQLite's own lock serialises writers.
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        )
        _sqlite_pragmas(engine, busy_timeout_ms)
        return engine
    engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True)
    _postgres_durability(engine)
    return engine


DURABLE = "stockdrop_durable"


def durable(session: Session) -> None:
    """Make the commit of ``session``'s transaction survive an OS crash.

    Call it first in the transaction: the setting is taken when it begins.
    """
    session.connection(execution_options={DURABLE: True})


def _postgres_durability(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(DURABLE):
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")


def _sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN and breaks
        # SAVEPOINT; take BEGIN ourselves (SQLAlchemy's documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across application crashes in WAL mode; only an OS
        # crash can lose the last transactions, never corrupt the database.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Set for every transaction, so a durable one never leaves FULL behind.
        level = "FULL" if conn.get_execution_options().get(DURABLE) else "NORMAL"
        conn.exec_driver_sql(f"PRAGMA synchronous={level}")
        # IMMEDIATE takes the write lock up front, so two writers wait on the
        # busy timeout instead of failing with "database is locked" mid-way.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def driver_connection(session: Session) -> Any:
    """The DB-API connection under ``session``'s transaction, for the bulk paths
    that bypass SQLAlchemy's per-row result processing."""
    conn = session.connection().connection.dbapi_connection
    assert conn is not None
    return conn


def session_factory(engine: Engine, *, info: Mapping[str, Any] | None = None) -> sessionmaker[Session]:
    """Sessions on ``engine``; each starts with a copy of ``info`` as its ``Session.info``."""
    return sessionmaker(engine, expire_on_commit=False, info=dict(info or {}))
