"""The hosted FTP/FTPS endpoint (pyftpdlib), a thin receiver.

Uploads are written to ``<root>/.staging/`` and only taken once complete; what
"complete" means, and why the 226 reply waits for it, is in ``ftp_handler``.
The jailed file system is in ``ftp_fs``, the data connection in ``ftp_data``.
This module holds the settings, the server, and the service that builds a
handler class (with TLS or without) per start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from daemon.auth.accounts import Authenticator
from daemon.auth.bans import BanList
from daemon.ingest.arrival import Arrival
from daemon.ingest.endpoints.ftp_data import DtpMixin, RecvMixin
from daemon.ingest.endpoints.ftp_fs import JailedFS
from daemon.ingest.endpoints.ftp_handler import BANNED_REPLY, Authorizer, Context, HandlerMixin, commands
from daemon.ingest.endpoints.gate import BANNED, LISTEN_BACKLOG, Gate, Limits, Ticket

try:  # FTPS needs pyOpenSSL; plain FTP works without it
    from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
except ImportError:  # pragma: no cover
    TLS_DTPHandler = TLS_FTPHandler = None

log = structlog.get_logger(__name__)
# pyftpdlib sets up its own stderr logging when nothing is configured; the
# daemon's logging setup decides where its records go instead.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class FtpConfig:
    host: str = "127.0.0.1"
    port: int = 2121
    passive_ports: range | None = None
    masquerade_address: str | None = None
    max_connections: int = 50
    max_per_ip: int = 10
    max_unauthenticated: int = 20  # connected, not logged in yet: in all
    max_unauthenticated_per_ip: int = 5  # and from one address
    auth_timeout: float = 30  # seconds to log in after connecting (failed logins pause 3 s each)
    idle_timeout: float = 300
    max_file_bytes: int = 512 * 1024 * 1024
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls: bool = False
    banner: str = "Stockdrop ready. Uploads go to /inbox, results are in /results."
    max_login_attempts: int = 3
    auth_failed_delay_s: float = 3.0  # pause before a 530 reply: slows password guessing
    completion_grace_s: float = 0.25  # at most this long a finished upload waits to see the client alive

    @property
    def limits(self) -> Limits:
        return Limits(self.max_connections, self.max_per_ip, self.max_unauthenticated,
                      self.max_unauthenticated_per_ip, self.auth_timeout)


_REFUSALS = {
    BANNED: BANNED_REPLY.encode() + b"\r\n",
    "max_per_ip": b"421 Too many connections from your address.\r\n",
    "max_unauthenticated_per_ip": b"421 Too many connections not logged in from your address.\r\n",
}
_BUSY = b"421 Too many connections; try again later.\r\n"


class _Server(ThreadedFTPServer):
    # pyftpdlib keeps the stop event and lock on the class, shared by every
    # server in the process; give each server its own so stopping one (or a
    # restart) cannot end another's connections.
    poll_timeout = 0.25  # how fast connection threads notice a stop

    def __init__(self, address: tuple[str, int], handler: type, gate: Gate) -> None:
        self._lock = threading.Lock()
        self._exit = threading.Event()
        self.gate = gate
        self.admitting: Ticket | None = None  # the ticket of the handler being built (server thread only)
        # Its own loop too: pyftpdlib's default loop is process-wide, so a
        # second server (FTPS beside FTP, a restart, a test) would share it
        # and stopping one would close the other's listener.
        super().__init__(address, handler, ioloop=IOLoop(), backlog=LISTEN_BACKLOG)

    def handle_accepted(self, sock: Any, addr: Any) -> None:
        # Bans and limits before pyftpdlib builds a handler: a refused
        # connection costs one reply and a close, not a handler and a thread.
        ticket = self.gate.admit(addr[0])
        if isinstance(ticket, str):
            try:
                sock.send(_REFUSALS.get(ticket, _BUSY))
            except OSError:
                pass
            sock.close()
            return
        self.admitting = ticket
        try:
            super().handle_accepted(sock, addr)
        finally:
            self.admitting = None
            if ticket.hang_up is None:  # no handler took it (the client had gone)
                ticket.release()

    def _loop(self, handler: Any) -> None:
        # A handler closed while it was built (the client left at once) is
        # closed before its thread starts; pyftpdlib would still register
        # its closed socket and die on the error (EINVAL, not the EBADF it
        # expects), with a traceback for a connection that was already gone.
        if handler._closed:
            return
        super()._loop(handler)


class FtpService:
    """The FTP/FTPS receiver as a service: start(), stop(), check(), address."""

    name = "ftp"

    def __init__(
        self,
        config: FtpConfig,
        authenticator: Authenticator,
        bans: BanList,
        deliver: Callable[[Arrival], int],
    ) -> None:
        if (config.tls_cert is None) != (config.tls_key is None):
            raise ValueError("ftp: set both tls_cert and tls_key, or neither")
        if config.require_tls and config.tls_cert is None:
            raise ValueError("ftp: require_tls needs tls_cert and tls_key")
        self.config = config
        self._ctx = Context(config, authenticator, bans, deliver)
        self.gate = Gate("ftp", config.limits, bans)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("ftp: not started")
        return self._address

    def _handler_class(self) -> type:
        cfg = self.config
        tls = cfg.tls_cert is not None
        base_handler = TLS_FTPHandler if tls else FTPHandler
        base_dtp = TLS_DTPHandler if tls else DTPHandler
        if base_handler is None:
            raise RuntimeError("ftp: FTPS needs pyOpenSSL installed")
        raw_dtp = type("RawDTP", (RecvMixin, DTPHandler), {})
        # MRO: our rules, pyftpdlib's TLS layer (if any), our recv, pyftpdlib's DTP
        bases = (DtpMixin, base_dtp, raw_dtp) if tls else (DtpMixin, raw_dtp)
        dtp = type("StockdropDTP", bases, {"timeout": cfg.idle_timeout})
        attrs: dict[str, Any] = {
            "ctx": self._ctx,
            "authorizer": Authorizer(),
            "abstracted_fs": JailedFS,
            "dtp_handler": dtp,
            "proto_cmds": commands(base_handler),
            "timeout": cfg.idle_timeout,
            "banner": cfg.banner,
            "max_login_attempts": cfg.max_login_attempts,
            "auth_failed_timeout": cfg.auth_failed_delay_s,
            "passive_ports": list(cfg.passive_ports) if cfg.passive_ports else None,
            "masquerade_address": cfg.masquerade_address,
            "permit_foreign_addresses": False,
            "permit_privileged_ports": False,
        }
        if tls:
            attrs.update(
                certfile=str(cfg.tls_cert),
                keyfile=str(cfg.tls_key),
                ssl_context=None,  # built fresh from this start's files
                tls_control_required=cfg.require_tls,
                tls_data_required=cfg.require_tls,
            )
        return type("StockdropFTPHandler", (HandlerMixin, base_handler), attrs)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("ftp: already running")
        server = _Server((self.config.host, self.config.port), self._handler_class(), self.gate)
        # the gate counts connections; pyftpdlib's own cap is only a backstop
        server.max_cons = 2 * self.config.max_connections
        server.max_cons_per_ip = 0
        self._server = server
        self._address = server.address[:2]
        self._stopping = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(server,), name="ftp-server",
                                        daemon=True)
        self._thread.start()
        log.info("ftp_listening", host=self._address[0], port=self._address[1],
                 tls=self.config.tls_cert is not None, require_tls=self.config.require_tls)

    def _run(self, server: _Server) -> None:
        try:
            while not self._stopping.is_set():
                server.serve_forever(timeout=0.2, blocking=False, handle_exit=False)
                self.gate.expire()
        except BaseException as exc:  # check() reports it
            self._error = exc
            log.exception("ftp_server_died")
        finally:
            server.close_all()
            self.gate.flush_log(everything=True)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.join_timeout = timeout
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("ftp_stop_timeout", timeout=timeout)
        self._thread = None
        self._server = None

    def check(self) -> None:
        if self._thread is None:
            return
        if not self._thread.is_alive():
            raise RuntimeError(f"ftp: server thread died: {self._error!r}")
