"""Alembic, driven from code: no alembic.ini to find, the URL comes from settings.

``stockdrop run`` refuses to start while a migration is pending; run
``stockdrop db upgrade`` first (``stockdrop init`` does it for a new demo).
With several boxes on one PostgreSQL, one box migrates, the others refuse
until the code they run matches the schema.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from daemon.errors import UserError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def pending(engine: Engine) -> bool:
    return current_revision(engine) != head_revision(engine)


def require_head(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not the code's."""
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise UserError(
            f"the database is at revision {current or 'none'}, this version needs {head}: "
            "run `stockdrop db upgrade`"
        )
