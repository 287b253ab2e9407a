"""Refuse addresses that keep failing to log in (shared by FTP and SFTP).

Scored the way SFTPGo's defender scores hosts: every event from an address
adds points, kept per address *and* per target account; the address is banned
once its points within ``window_s`` reach ``threshold``.

- a wrong password for an account that exists: ``score_valid`` (1);
- a login for an account that does not exist: ``score_invalid`` (2), since
  guessing names is what a scanner does, and a warehouse mistyping its own
  password is not;
- a connection over a connection limit: ``score_limit_exceeded`` (3).

A successful login clears only that account's points from that address, so a
valid login of its own does not launder an attacker's guesses at another
account. A banned address has no points; its next ban, if it comes within
``remember_s`` of the last one ending, lasts ``ban_growth_percent`` longer
(up to ``max_ban_s``).

Bans (not points) go to a :class:`BanStore` when one is given, so they
survive a restart and several daemons on one database honour each other's
bans: each reads the store again every ``refresh_s``. Without a store the
list lives in memory (tests).

The rules are pure: callers pass ``now`` (wall-clock seconds, as stored),
so they are tested without sleeping.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

# Forget idle addresses once the table is this big, so a scan from many
# addresses cannot grow memory without bound.
_PRUNE_AT = 10_000
LIMITS = ""  # the target of connection-limit events: no account


@dataclass(frozen=True)
class BanPolicy:
    threshold: int = 5
    score_valid: int = 1
    score_invalid: int = 2
    score_limit_exceeded: int = 3
    window_s: float = 300
    ban_s: float = 900
    ban_growth_percent: float = 50
    max_ban_s: float = 86_400
    remember_s: float = 86_400
    refresh_s: float = 5

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")

    def ban_seconds(self, count: int) -> float:
        """How long the ``count``-th ban in a row of one address lasts."""
        grown = self.ban_s * (1 + self.ban_growth_percent / 100) ** (count - 1)
        return min(grown, max(self.max_ban_s, self.ban_s))


@dataclass(frozen=True)
class Ban:
    address: str
    until: float  # wall-clock seconds
    count: int  # 1 for a first ban, 2 for the next one within remember_s, ...
    reason: str
    since: float


class BanStore(Protocol):
    """Where bans outlive the process (``daemon.auth.ban_store.DbBanStore``)."""

    def load(self, now: float, remember_s: float) -> list[Ban]:
        """Every ban still in force or ended less than ``remember_s`` ago."""
        ...

    def save(self, ban: Ban) -> None: ...


class BanList:
    def __init__(self, policy: BanPolicy | None = None, store: BanStore | None = None) -> None:
        self.policy = policy or BanPolicy()
        self.store = store
        self.bans_total = 0  # bans made by this process since start
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        # address -> target account ("" for limits) -> (time, points)
        self._events: dict[str, dict[str, deque[tuple[float, int]]]] = {}
        self._bans: dict[str, Ban] = {}  # in force, or remembered for the next one's length
        self._unsaved: dict[str, Ban] = {}  # made here, not yet in the store (it was down)
        self._refreshed_at: float | None = None

    # --- events

    def failed(self, addr: str, user: str, now: float, *, known_user: bool = True) -> bool:
        """Record a failed password login as ``user``; True when it got ``addr`` banned."""
        p = self.policy
        return self._score(addr, user, p.score_valid if known_user else p.score_invalid, now)

    def limit_exceeded(self, addr: str, now: float) -> bool:
        """Record a connection refused by a connection limit; True when it got ``addr`` banned."""
        return self._score(addr, LIMITS, self.policy.score_limit_exceeded, now)

    def succeeded(self, addr: str, user: str, now: float) -> None:
        """``user`` logged in from ``addr``: forget that pair's failures, and only those."""
        with self._lock:
            targets = self._events.get(addr)
            if targets is not None:
                targets.pop(user, None)
                if not targets:
                    del self._events[addr]

    def is_banned(self, addr: str, now: float) -> bool:
        self._maybe_refresh(now)
        with self._lock:
            ban = self._bans.get(addr)
            return ban is not None and now < ban.until

    def active(self, now: float) -> list[Ban]:
        self._maybe_refresh(now)
        with self._lock:
            return sorted((b for b in self._bans.values() if now < b.until), key=lambda b: b.since)

    # --- scoring

    def _score(self, addr: str, target: str, points: int, now: float) -> bool:
        if points <= 0:
            return False
        p = self.policy
        self._maybe_refresh(now)
        with self._lock:
            current = self._bans.get(addr)
            if current is not None and now < current.until:
                return False  # a banned address has no score
            targets = self._events.setdefault(addr, {})
            targets.setdefault(target, deque()).append((now, points))
            total = 0
            for name in list(targets):
                events = targets[name]
                while events and events[0][0] <= now - p.window_s:
                    events.popleft()
                if not events:
                    del targets[name]
                total += sum(pts for _, pts in events)
            if total < p.threshold:
                if len(self._events) > _PRUNE_AT:
                    self._prune_locked(now)
                return False
            reason = _reason(targets)
            del self._events[addr]
            count = 1
            if current is not None and now - current.until < p.remember_s:
                count = current.count + 1
            ban = Ban(addr, now + p.ban_seconds(count), count, reason, now)
            self._bans[addr] = ban
            self.bans_total += 1
        log.warning("login_ban", remote_addr=addr, score=total, threshold=p.threshold,
                    window_s=p.window_s, ban_s=round(ban.until - now), ban_count=count, reason=reason)
        self._save(ban)
        return True

    def _prune_locked(self, now: float) -> None:
        window = self.policy.window_s
        for addr in [a for a, ts in self._events.items()
                     if all(not ev or ev[-1][0] <= now - window for ev in ts.values())]:
            del self._events[addr]
        forget = self.policy.remember_s
        for addr in [a for a, b in self._bans.items() if now - b.until >= forget]:
            del self._bans[addr]

    # --- the store

    def _save(self, ban: Ban) -> None:
        if self.store is None:
            return
        try:
            self.store.save(ban)
        except Exception as exc:  # noqa: BLE001 - the ban holds in memory; the next refresh tries again
            log.warning("ban_not_saved", remote_addr=ban.address, error=str(exc))
            with self._lock:
                self._unsaved[ban.address] = ban

    def refresh(self, now: float) -> None:
        """Read the store again: bans by other daemons, and bans removed with the CLI."""
        if self.store is None:
            return
        with self._lock:
            unsaved = list(self._unsaved.values())
        for ban in unsaved:
            try:
                self.store.save(ban)
            except Exception as exc:  # noqa: BLE001 - still down: keep it for the next refresh
                log.warning("ban_not_saved", remote_addr=ban.address, error=str(exc))
                return
            with self._lock:
                self._unsaved.pop(ban.address, None)
        stored = self.store.load(now, self.policy.remember_s)
        with self._lock:
            self._bans = {b.address: b for b in stored}
            self._bans.update(self._unsaved)
            self._refreshed_at = now

    def _maybe_refresh(self, now: float) -> None:
        if self.store is None:
            return
        last = self._refreshed_at
        if last is not None and 0 <= now - last < self.policy.refresh_s:
            return
        # one thread reads; the others go on with what is cached
        if not self._refreshing.acquire(blocking=last is None):
            return
        try:
            self.refresh(now)
        except Exception as exc:  # noqa: BLE001 - a store that is down must not stop logins
            log.warning("bans_not_read", error=str(exc))
            self._refreshed_at = now  # try again after refresh_s, not on every connection
        finally:
            self._refreshing.release()


_REASON_TARGETS = 5


def _reason(targets: dict[str, deque[tuple[float, int]]]) -> str:
    """What got an address banned, for people: ``failed logins as wh2 x4; connection limits x1``.

    The names are the client's, so they are shown escaped and cut short.
    """
    parts = []
    for target, events in sorted(targets.items())[:_REASON_TARGETS]:
        name = target if target.isprintable() and len(target) <= 64 else repr(target[:64])
        what = "connection limits" if target == LIMITS else f"failed logins as {name}"
        parts.append(f"{what} x{len(events)}")
    if len(targets) > _REASON_TARGETS:
        parts.append(f"{len(targets) - _REASON_TARGETS} more accounts")
    return "; ".join(parts)

