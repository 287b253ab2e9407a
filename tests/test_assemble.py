"""Assembling the daemon's services against a database another daemon is starting on too."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from daemon.runtime import assemble
from daemon.settings import load_settings
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, write_config


def test_a_start_that_races_another_daemons_first_sync_tries_once_more(
        database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(write_config(tmp_path, ONE_WAREHOUSE, database_url=database.url))
    real, calls = assemble.sync_with_config, []

    def racing(session, config, now):  # type: ignore[no-untyped-def]
        calls.append(now)
        real(session, config, now)
        if len(calls) == 1:  # the other daemon inserted the same merchant first
            raise IntegrityError("INSERT INTO merchants", {}, Exception("duplicate key"))

    monkeypatch.setattr(assemble, "sync_with_config", racing)
    services = assemble.build_services(settings, database.engine)
    assert len(calls) == 2 and [s.name for s in services][:2] in (["checkpointer", "ingest"], ["ingest", "watcher"])


def test_a_start_that_keeps_failing_its_sync_says_so(
        database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(write_config(tmp_path, ONE_WAREHOUSE, database_url=database.url))

    def broken(session, config, now):  # type: ignore[no-untyped-def]
        raise IntegrityError("INSERT INTO merchants", {}, Exception("duplicate key"))

    monkeypatch.setattr(assemble, "sync_with_config", broken)
    with pytest.raises(IntegrityError):
        assemble.build_services(settings, database.engine)
