"""Login bans in the database: the rows behind ``stockdrop ban`` and ``auth.ban_store``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from daemon.db.models import LoginBan


def save_ban(session: Session, address: str, until: datetime, bans: int, reason: str,
             node: str | None, now: datetime) -> None:
    """Insert or replace ``address``'s ban (one row per address)."""
    row = session.get(LoginBan, address)
    if row is None:
        session.add(LoginBan(address=address, banned_until=until, bans=bans, reason=reason[:500],
                             node=node, banned_at=now))
        return
    # another daemon may have banned it meanwhile: keep the longer ban, the higher count
    row.banned_until = max(row.banned_until, until)
    row.bans = max(row.bans, bans)
    row.reason, row.node, row.banned_at = reason[:500], node, now


def recent_bans(session: Session, ended_after: datetime) -> list[LoginBan]:
    """Bans in force, or that ended after ``ended_after``, oldest first."""
    return list(session.scalars(select(LoginBan).where(LoginBan.banned_until > ended_after)
                                .order_by(LoginBan.banned_at, LoginBan.address)))


def forget_bans(session: Session, ended_before: datetime) -> int:
    """Drop bans that ended before ``ended_before``; how many went."""
    result = session.execute(delete(LoginBan).where(LoginBan.banned_until < ended_before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def remove_ban(session: Session, address: str) -> bool:
    """Lift ``address``'s ban and forget it (its next ban is a first one again)."""
    result = session.execute(delete(LoginBan).where(LoginBan.address == address))
    return bool(result.rowcount)  # type: ignore[attr-defined]
