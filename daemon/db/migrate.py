"""Alembic, driven from code: no alembic.ini to find, the URL comes from settings.

``stockdrop run`` refuses to start while a migration is pending; run
``stockdrop db upgrade`` first (``stockdrop init`` does it for a new demo).
With several boxes on one PostgreSQL, one box migrates, the others refuse
until the code they run matches the schema.

Alembic is imported only to migrate: checking that the schema is the code's
(what every command does first) reads one row, so a read-only command does
not pay for loading the migration scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from daemon.errors import UserError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision; a test holds it to Alembic's own head.
HEAD = "0018"


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty one)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def head_revision(engine: Engine) -> str | None:
    """Alembic's head, read from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def pending(engine: Engine) -> bool:
    return current_revision(engine) != HEAD


def require_head(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not the code's."""
    current = current_revision(engine)
    if current != HEAD:
        raise UserError(
            f"the database is at revision {current or 'none'}, this version needs {HEAD}: "
            "run `stockdrop db upgrade`"
        )
