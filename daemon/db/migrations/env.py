"""Alembic environment: the engine is handed in by daemon.db.migrate."""

from __future__ import annotations

from alembic import context

from daemon.db.models import Base

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    raw = connection.connection.dbapi_connection
    if sqlite:
        # Batch mode rebuilds a table by DROP and rename. With foreign keys
        # on, the DROP deletes every child row through ON DELETE CASCADE
        # (a source's stock, an account's keys). Off outside the
        # transaction, as SQLite requires; checked and restored after.
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite cannot ALTER most things; batch mode copies the table instead.
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        if sqlite:
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows without their parent: {broken[:5]}")
    finally:
        if sqlite:
            raw.execute("PRAGMA foreign_keys=ON")
