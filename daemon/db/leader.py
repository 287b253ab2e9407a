"""Leadership: work that must run on one daemon at a time, however many share the database.

On PostgreSQL a daemon leads a piece of work while it holds a session
advisory lock named for it, on a connection of its own: the lock is the
server's, so it is released the moment that connection ends, whether the
daemon stopped, crashed or lost the network, and another daemon takes over
at its next try. On SQLite only one daemon uses the database: it always
leads.

The lock is named for the work and for the schema the daemon's tables are
in (``current_schema()``): advisory locks are per database, and two
installations in two schemas of one database (``search_path``) are two
stores, each with its own leader.

Ask ``is_leader()`` right before the work (a scheduled export, a digest, a
retention sweep); it is cheap while the lock is held (a ``SELECT 1`` on the
lock's connection proves the session still is) and tries to take the lock
when it is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Any

import structlog
from sqlalchemy import Engine

log = structlog.get_logger(__name__)


def lock_key(name: str, schema: str) -> int:
    """The 64-bit advisory-lock key for ``name`` in ``schema`` (the same for every daemon of that store)."""
    return int.from_bytes(hashlib.sha256(f"stockdrop:{schema}:{name}".encode()).digest()[:8], "big", signed=True)


class Leadership:
    def __init__(self, engine: Engine, name: str) -> None:
        self.name = name
        self._engine = engine
        self._held: Any = None  # the lock's connection, detached from the pool
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether other daemons may share the database (and so the work)."""
        return self._engine.dialect.name == "postgresql"

    def is_leader(self) -> bool:
        if not self.shared:
            return True
        with self._lock:
            if self._held is not None and self._alive():
                return True
            self._close()
            try:
                held = self._engine.raw_connection()
                held.detach()  # its own session: never handed to anyone else by the pool
                conn: Any = held.dbapi_connection  # psycopg's Connection
                conn.rollback()  # the pool's pre-ping may have left a transaction open
                conn.autocommit = True
                (schema,) = conn.execute("SELECT current_schema()").fetchone()
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.name, schema),)).fetchone()[0]
            except Exception:
                log.warning("leadership_unavailable", work=self.name, exc_info=True)
                return False
            if not got:
                held.close()
                return False
            self._held = held
            log.info("leadership_taken", work=self.name)
            return True

    def _alive(self) -> bool:
        try:
            self._held.dbapi_connection.execute("SELECT 1").fetchone()
        except Exception:  # noqa: BLE001 - a broken session has lost the lock with it
            log.warning("leadership_lost", work=self.name)
            return False
        return True

    def _close(self) -> None:
        if self._held is not None:
            with contextlib.suppress(Exception):  # closing a connection that may be dead already
                self._held.close()
            self._held = None

    def release(self) -> None:
        """Give the work up (at stop); another daemon takes it at its next try."""
        with self._lock:
            self._close()
