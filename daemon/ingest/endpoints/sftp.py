"""The hosted SFTP endpoint (paramiko server), a thin receiver.

Only the ``sftp`` subsystem is offered: no shell, exec or forwarding. This
module holds the SSH side (logins, channel policy, sessions, the accept loop);
what a logged-in session may do with files, and when an upload is taken, is in
``sftp_fs``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import structlog
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from daemon.auth.accounts import Account, Authenticator
from daemon.auth.bans import BanList
from daemon.auth.hostkey import fingerprint, load_or_create_host_key
from daemon.ingest.arrival import Arrival
from daemon.ingest.endpoints.gate import LISTEN_BACKLOG, Gate, Limits, Ticket
from daemon.ingest.endpoints.jail import Jail
from daemon.ingest.endpoints.sftp_fs import SftpServer

log = structlog.get_logger(__name__)

# paramiko logs a traceback as one record per line, and an error for every
# client that leaves before its banner: a flood wrote thousands of lines. The
# gate logs one line per refused or timed-out connection; paramiko keeps its
# one-line errors about clients that did speak SSH.
_TRACEBACK_LINE = re.compile(
    r"^(Traceback \(most recent call last\)|During handling of|The above exception|\s|$"
    r"|[\w.]+(Error|Exception|Failure)(:|$))"
)


class _OneLineErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TRACEBACK_LINE.match(message):
            return False
        return "Error reading SSH protocol banner" not in message


logging.getLogger("paramiko.transport").addFilter(_OneLineErrors())


@dataclass(frozen=True)
class SftpConfig:
    host: str = "127.0.0.1"
    port: int = 2222
    host_key_path: Path = Path("ssh_host_ed25519_key")
    max_file_bytes: int = 512 * 1024 * 1024
    idle_timeout: float = 300
    max_connections: int = 50
    max_per_ip: int = 10
    max_unauthenticated: int = 20  # connected, not logged in yet: in all
    max_unauthenticated_per_ip: int = 5  # and from one address
    auth_timeout: float = 10  # seconds to finish logging in after connecting
    max_auth_failures: int = 6  # per connection, then it is closed

    @property
    def limits(self) -> Limits:
        return Limits(self.max_connections, self.max_per_ip, self.max_unauthenticated,
                      self.max_unauthenticated_per_ip, self.auth_timeout)


@dataclass(frozen=True)
class _Context:
    config: SftpConfig
    authenticator: Authenticator
    bans: BanList
    deliver: Callable[[Arrival], int]


@dataclass
class Session:
    """One SSH connection: who it is and the threads that serve it."""

    ctx: _Context
    remote_addr: str
    ticket: Ticket
    transport: paramiko.Transport | None = None
    accounts: dict[str, Account] = field(default_factory=dict)  # by username, once checked
    auth_failures: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    threads: list[threading.Thread] = field(default_factory=list)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SshServer(paramiko.ServerInterface):
    """Authentication and channel policy: logins, and the sftp subsystem only."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def _banned(self) -> bool:
        return self.session.ctx.bans.is_banned(self.session.remote_addr, time.time())

    def check_auth_password(self, username: str, password: str) -> int:
        s = self.session
        if self._banned():
            self._hang_up()
            return AUTH_FAILED
        account = s.ctx.authenticator.check_password(username, password)
        if account is None:
            known = s.ctx.authenticator.knows(username)
            log.info("login_failed", protocol="sftp", user=username, remote_addr=s.remote_addr,
                     known_user=known)
            s.auth_failures += 1
            banned = s.ctx.bans.failed(s.remote_addr, username, time.time(), known_user=known)
            if banned or s.auth_failures >= s.ctx.config.max_auth_failures:
                self._hang_up()
            return AUTH_FAILED
        s.ctx.bans.succeeded(s.remote_addr, username, time.time())
        return self._accept(account)

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        # paramiko asks before and after checking the signature; a key that
        # does not match is not counted as a failure: clients offer every key
        # they hold, and that is not password guessing.
        if self._banned():
            self._hang_up()
            return AUTH_FAILED
        account = self.session.ctx.authenticator.check_key(username, key)
        return AUTH_FAILED if account is None else self._accept(account)

    def _accept(self, account: Account) -> int:
        try:
            Jail(account.root).ensure_folders()
        except OSError as exc:
            log.error("account_folder_missing", user=account.username, root=str(account.root),
                      error=str(exc))
            return AUTH_FAILED
        self.session.accounts[account.username] = account
        self.session.ticket.logged_in()
        self.session.touch()
        return AUTH_SUCCESSFUL

    def _hang_up(self) -> None:
        # closing from inside the transport's own thread is fine in paramiko,
        # but do it after this reply so the client hears "failed" first
        t = self.session.transport
        if t is not None:
            timer = threading.Timer(0.1, t.close)
            timer.daemon = True
            self.session.threads.append(timer)
            timer.start()

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != "sftp":
            return False
        return super().check_channel_subsystem_request(channel, name)

    # shell, exec, pty, x11, agent, port forwarding, env: paramiko's defaults refuse


class SftpService:
    """The SFTP receiver as a service: start(), stop(), check(), address."""

    name = "sftp"

    def __init__(
        self,
        config: SftpConfig,
        authenticator: Authenticator,
        bans: BanList,
        deliver: Callable[[Arrival], int],
    ) -> None:
        self.config = config
        self._ctx = _Context(config, authenticator, bans, deliver)
        self.gate = Gate("sftp", config.limits, bans)
        self._host_key: paramiko.PKey | None = None
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._sessions: list[Session] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._address: tuple[str, int] | None = None
        self._housekept = 0.0

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("sftp: not started")
        return self._address

    @property
    def host_key(self) -> paramiko.PKey:
        if self._host_key is None:
            self._host_key = load_or_create_host_key(self.config.host_key_path)
        return self._host_key

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("sftp: already running")
        key = self.host_key
        listener = socket.create_server((self.config.host, self.config.port), backlog=LISTEN_BACKLOG)
        listener.settimeout(0.2)  # the accept loop wakes to notice stop() and idle sessions
        self._listener = listener
        self._address = listener.getsockname()[:2]
        self._stopping = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._accept_loop, args=(listener,),
                                        name="sftp-accept", daemon=True)
        self._thread.start()
        log.info("sftp_listening", host=self._address[0], port=self._address[1],
                 host_key=fingerprint(key))

    def _accept_loop(self, listener: socket.socket) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    conn, addr = listener.accept()
                except TimeoutError:
                    self._housekeeping()
                    continue
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                self._admit(conn, addr[0])
        except BaseException as exc:  # check() reports it
            self._error = exc
            log.exception("sftp_server_died")
        finally:
            listener.close()

    def _admit(self, conn: socket.socket, remote_addr: str) -> None:
        now = time.monotonic()
        if now - self._housekept >= 0.1:  # not on every accept: a flood brings thousands a second
            self._housekeeping()
        ticket = self.gate.admit(remote_addr)
        if isinstance(ticket, str):
            # a reset, not a FIN: nothing of a refused connection stays in TIME_WAIT
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        session = Session(self._ctx, remote_addr, ticket)
        ticket.hang_up = lambda _why: session.close()
        try:
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            session.transport = transport
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", SftpServer, session)
            # the gate hangs up at auth_timeout, and logs it; paramiko's own
            # deadlines are only a backstop, so they must not come first
            transport.handshake_timeout = transport.banner_timeout = self.config.auth_timeout + 5
            with self._lock:
                self._sessions.append(session)
            # with an event, start_server returns at once; the handshake runs
            # in the transport's own thread
            transport.start_server(event=threading.Event(), server=SshServer(session))
        except Exception as exc:  # noqa: BLE001 - one connection's failure, not the server's
            log.warning("sftp_session_failed", remote_addr=remote_addr, error=str(exc))
            session.close()
            conn.close()
            ticket.release()  # housekeeping releases it too if the session was listed: once is once

    def _housekeeping(self) -> None:
        self.gate.expire()  # paramiko has no login deadline on the server side
        now = self._housekept = time.monotonic()
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            t = s.transport
            if t is not None and t.is_alive() and now - s.last_activity > self.config.idle_timeout:
                log.info("sftp_idle_timeout", remote_addr=s.remote_addr)
                s.close()
            if t is None or not t.is_alive():
                self._join_session(s, deadline=now)
                with self._lock:
                    if s in self._sessions and not any(th.is_alive() for th in s.threads):
                        self._sessions.remove(s)
                        s.ticket.release()

    @staticmethod
    def _join_session(s: Session, deadline: float) -> None:
        threads: list[threading.Thread] = list(s.threads)
        if s.transport is not None:
            threads.append(s.transport)
        for th in threads:
            if th.ident is None or th is threading.current_thread():
                continue
            th.join(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            sessions, self._sessions = list(self._sessions), []
        for s in sessions:
            s.close()  # ends the transport; its sftp thread sees EOF and drops unfinished uploads
        for s in sessions:
            self._join_session(s, deadline)
            s.ticket.release()
        self.gate.flush_log(everything=True)
        self._thread = None

    def check(self) -> None:
        if self._thread is None:
            return
        if not self._thread.is_alive():
            raise RuntimeError(f"sftp: accept thread died: {self._error!r}")
