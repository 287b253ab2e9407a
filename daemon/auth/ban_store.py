"""Bans kept in the database (``login_bans``), for ``BanList``: across restarts, across daemons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon.auth.bans import Ban
from daemon.db import bans as rows

_FORGET_EVERY_S = 3600


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class DbBanStore:
    def __init__(self, sessions: sessionmaker[Session], node: str | None = None) -> None:
        self._sessions = sessions
        self._node = node
        self._forgot_at: float | None = None

    def load(self, now: float, remember_s: float) -> list[Ban]:
        cutoff = _at(now) - timedelta(seconds=remember_s)
        if self._forgot_at is None or now - self._forgot_at >= _FORGET_EVERY_S:
            # a write: not on every read, which comes every few seconds from every daemon
            with self._sessions() as session, session.begin():
                rows.forget_bans(session, cutoff)
            self._forgot_at = now
        with self._sessions() as session:
            found = rows.recent_bans(session, cutoff)
            return [Ban(r.address, r.banned_until.timestamp(), r.bans, r.reason, r.banned_at.timestamp())
                    for r in found]

    def save(self, ban: Ban) -> None:
        for attempt in (1, 2):
            try:
                with self._sessions() as session, session.begin():
                    rows.save_ban(session, ban.address, _at(ban.until), ban.count, ban.reason, self._node,
                                  _at(ban.since))
                return
            except IntegrityError:  # another daemon inserted the same address first: update it
                if attempt == 2:
                    raise
