"""Refuse addresses that keep failing to log in (shared by FTP and SFTP).

Pure logic: the caller passes ``now`` (any monotonic seconds), so the rules are
tested without sleeping.
"""

from __future__ import annotations

import threading
from collections import deque

import structlog

log = structlog.get_logger(__name__)

# Forget idle addresses once the table is this big, so a scan from many
# addresses cannot grow memory without bound.
_PRUNE_AT = 10_000


class BanList:
    def __init__(self, max_failures: int = 5, window_s: float = 300, ban_s: float = 900) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.max_failures = max_failures
        self.window_s = window_s
        self.ban_s = ban_s
        self.bans_total = 0  # bans since start
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def failed(self, addr: str, now: float) -> bool:
        """Record a failed login; True when this failure got ``addr`` banned."""
        with self._lock:
            if self._banned_locked(addr, now):
                return False
            times = self._failures.setdefault(addr, deque())
            times.append(now)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) < self.max_failures:
                if len(self._failures) > _PRUNE_AT:
                    self._prune_locked(now)
                return False
            del self._failures[addr]
            self._banned_until[addr] = now + self.ban_s
            self.bans_total += 1
        log.warning(
            "login_ban", remote_addr=addr, failures=self.max_failures,
            window_s=self.window_s, ban_s=self.ban_s,
        )
        return True

    def succeeded(self, addr: str, now: float) -> None:
        with self._lock:
            self._failures.pop(addr, None)

    def is_banned(self, addr: str, now: float) -> bool:
        with self._lock:
            return self._banned_locked(addr, now)

    def _banned_locked(self, addr: str, now: float) -> bool:
        until = self._banned_until.get(addr)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[addr]
            return False
        return True

    def _prune_locked(self, now: float) -> None:
        for addr in [a for a, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
            del self._failures[addr]
        for addr in [a for a, until in self._banned_until.items() if now >= until]:
            del self._banned_until[addr]
