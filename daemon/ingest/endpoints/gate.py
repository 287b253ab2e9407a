"""Who may connect to a hosted endpoint: bans and connection limits, checked at accept.

A connection is refused before any protocol work (no SSH handshake, no FTP
handler) when its address is banned or over a limit, so a flood from one
address costs an accept and a close each and cannot take the slots another
address needs:

- ``max_connections`` in all, ``max_per_ip`` from one address;
- ``max_unauthenticated`` not yet logged in, ``max_unauthenticated_per_ip``
  of those from one address; a connection not logged in within
  ``auth_timeout`` is hung up.

A refusal by a per-address limit scores against the address in the
``BanList`` (a flooder gets banned); a refusal by a total does not, since
the honest client that finds the server full did nothing wrong.

Refusals are logged one line each, without tracebacks; but the refusals of
one address for one reason within ``LOG_EVERY_S`` are one line, written at
the first and at the last, whose ``repeats`` counts the others (every line
stands for 1 + ``repeats`` refusals): a flood reconnecting thousands of times a
second would otherwise cost more in log lines than in refusals (and
journald drops lines past its rate limit).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from daemon.auth.bans import BanList

log = structlog.get_logger(__name__)

BANNED = "banned"
LATE = "auth_timeout"
# The listen queue of both endpoints. A full queue drops new SYNs and the
# client retries a second later: with pyftpdlib's and our old 100, a flood
# filled it and an honest client waited out that retry. Refusing is fast
# (thousands a second), so a long queue is drained long before that.
LISTEN_BACKLOG = 2048
LOG_EVERY_S = 1.0
# At most this many refusals a second. A refusal is cheap, so a flooder that
# reconnects at once keeps our accept thread (and its own process) busy at
# tens of thousands a second, and an honest login on the same cores waits
# for CPU; paced, the flood slows down with us. The accept queue (2048) holds
# what waits, and at this pace even a 300-connection flood ahead of an honest
# client is through in a sixth of a second.
MAX_REFUSALS_PER_S = 2000
_PACE_WINDOW_S = 0.01


@dataclass(frozen=True)
class Limits:
    max_connections: int = 50
    max_per_ip: int = 10
    max_unauthenticated: int = 20
    max_unauthenticated_per_ip: int = 5
    auth_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_ip", "max_unauthenticated", "max_unauthenticated_per_ip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.auth_timeout <= 0:
            raise ValueError("auth_timeout must be above 0")


@dataclass(eq=False)
class Ticket:
    """One admitted connection, until it is released."""

    gate: Gate
    address: str
    opened: float
    authenticated: bool = False
    hang_up: Callable[[str], None] | None = None  # how the endpoint closes it, told why (BANNED, LATE)
    _released: bool = field(default=False, repr=False)

    def logged_in(self) -> None:
        self.gate._logged_in(self)

    def release(self) -> None:
        self.gate._release(self)


class Gate:
    def __init__(self, protocol: str, limits: Limits, bans: BanList,
                 clock: Callable[[], float] = time.time) -> None:
        self.protocol = protocol
        self.limits = limits
        self.bans = bans
        self.refused_total = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._tickets: set[Ticket] = set()
        self._per_ip: Counter[str] = Counter()
        self._unauth: set[Ticket] = set()
        self._unauth_per_ip: Counter[str] = Counter()
        # (address, reason) -> [when its last line was written, refusals since]
        self._quiet: dict[tuple[str, str], list[float]] = {}
        self._pace_start, self._pace_count = 0.0, 0

    def admit(self, address: str) -> Ticket | str:
        """A ticket for a new connection from ``address``, or why it is refused (logged)."""
        now = self._clock()
        if self.bans.is_banned(address, now):
            self._refused(address, BANNED, now)
            self._pace()
            return BANNED
        with self._lock:
            reason, scored = self._over_limit_locked(address)
            if reason is None:
                ticket = Ticket(self, address, now)
                self._tickets.add(ticket)
                self._per_ip[address] += 1
                self._unauth.add(ticket)
                self._unauth_per_ip[address] += 1
                return ticket
        banned = scored and self.bans.limit_exceeded(address, now)
        self._refused(address, reason, now, banned=banned)
        if banned:
            self.hang_up_unauthenticated(address)
        self._pace()
        return reason

    def _pace(self) -> None:
        """Hold the accepting thread once refusals run over ``MAX_REFUSALS_PER_S``."""
        t = time.monotonic()
        with self._lock:
            if t - self._pace_start >= _PACE_WINDOW_S:
                self._pace_start, self._pace_count = t, 0
            self._pace_count += 1
            wait = self._pace_start + _PACE_WINDOW_S - t
            over = self._pace_count >= MAX_REFUSALS_PER_S * _PACE_WINDOW_S
        if over and wait > 0:
            time.sleep(wait)

    def _over_limit_locked(self, address: str) -> tuple[str | None, bool]:
        lim = self.limits
        if self._per_ip[address] >= lim.max_per_ip:
            return "max_per_ip", True
        if self._unauth_per_ip[address] >= lim.max_unauthenticated_per_ip:
            return "max_unauthenticated_per_ip", True
        if len(self._tickets) >= lim.max_connections:
            return "max_connections", False
        if len(self._unauth) >= lim.max_unauthenticated:
            return "max_unauthenticated", False
        return None, False

    def _refused(self, address: str, reason: str, now: float, banned: bool = False) -> None:
        with self._lock:
            self.refused_total += 1
            quiet = self._quiet.get((address, reason))
            if quiet is not None and now - quiet[0] < LOG_EVERY_S and not banned:
                quiet[1] += 1
                return
            repeats = int(quiet[1]) if quiet is not None else 0
            self._quiet[(address, reason)] = [now, 0]
        extra = {"banned": True} if banned else {}
        log.info("connection_refused", protocol=self.protocol, remote_addr=address, reason=reason,
                 repeats=repeats, **extra)

    def flush_log(self, everything: bool = False) -> None:
        """Write the lines held back for refusals more than ``LOG_EVERY_S`` ago (all: at stop)."""
        now = self._clock()
        with self._lock:
            due = [(key, int(q[1])) for key, q in self._quiet.items()
                   if everything or now - q[0] >= LOG_EVERY_S]
            for key, _ in due:
                del self._quiet[key]
        for (address, reason), held in due:
            if held:  # this line is the last of them; repeats, the others
                log.info("connection_refused", protocol=self.protocol, remote_addr=address, reason=reason,
                         repeats=held - 1)

    def hang_up_unauthenticated(self, address: str) -> None:
        """Close ``address``'s connections not yet logged in (it was just banned)."""
        with self._lock:
            doomed = [t for t in self._unauth if t.address == address]
        for t in doomed:
            if t.hang_up is not None:
                t.hang_up(BANNED)

    def expire(self) -> list[Ticket]:
        """Hang up connections that did not log in within ``auth_timeout``; which they were."""
        self.flush_log()
        cutoff = self._clock() - self.limits.auth_timeout
        with self._lock:
            late = [t for t in self._unauth if t.opened <= cutoff]
        for t in late:
            log.info("login_timeout", protocol=self.protocol, remote_addr=t.address,
                     auth_timeout=self.limits.auth_timeout)
            if t.hang_up is not None:
                t.hang_up(LATE)
            self._logged_in(t, counted=False)  # no longer waiting to log in: frees its pre-login slot
        return late

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"connections": len(self._tickets), "unauthenticated": len(self._unauth)}

    def _logged_in(self, ticket: Ticket, counted: bool = True) -> None:
        with self._lock:
            if ticket in self._unauth:
                self._unauth.discard(ticket)
                self._unauth_per_ip[ticket.address] -= 1
                if self._unauth_per_ip[ticket.address] <= 0:
                    del self._unauth_per_ip[ticket.address]
            if counted:
                ticket.authenticated = True

    def _release(self, ticket: Ticket) -> None:
        self._logged_in(ticket, counted=False)
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            self._tickets.discard(ticket)
            self._per_ip[ticket.address] -= 1
            if self._per_ip[ticket.address] <= 0:
                del self._per_ip[ticket.address]
