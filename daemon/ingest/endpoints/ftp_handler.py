"""pyftpdlib's FTPHandler (the control connection) with Stockdrop's rules: login,
where uploads may go (STOR, RNFR/RNTO), and when an upload counts as complete.

pyftpdlib reports a transfer as received whenever the data connection ends
with EOF, and a client that was killed mid-upload ends it with EOF too. So the
226 reply is held back for a few round trips (at most ``completion_grace_s``)
and the upload only counts
if the control connection is still alive then (a killed client closes both
connections at once); any command from the client settles it at once.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from daemon.auth.accounts import Authenticator
from daemon.auth.bans import BanList
from daemon.ingest.arrival import Arrival
from daemon.ingest.endpoints.ftp_fs import StagingWriter
from daemon.ingest.endpoints.gate import BANNED, Ticket
from daemon.ingest.endpoints.jail import (
    Area,
    Jail,
    JailError,
    Sender,
    Target,
    discard,
    finish_upload,
    is_temp_name,
    take_on_rename,
)

if TYPE_CHECKING:
    # pyftpdlib ships no types, so to mypy the handler is Any and the mixin
    # may use pyftpdlib's attributes; at run time it is a plain mixin.
    from pyftpdlib.handlers import FTPHandler as _ControlBase

    from daemon.ingest.endpoints.ftp import FtpConfig
else:
    _ControlBase = object

log = structlog.get_logger(__name__)

RESUME_REFUSED = "Resume is not supported; upload the whole file again."
BANNED_REPLY = "421 Too many failed logins from your address; try again later."
_ANONYMOUS = {"anonymous", "ftp"}


@dataclass
class _Upload:
    staged: Path
    name: str
    started: float
    writer: StagingWriter


def _peer_gone(sock: Any) -> bool:
    """True when the client has closed the (control) connection."""
    try:
        dup = socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:
        return True
    try:
        return dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        dup.close()


@dataclass(frozen=True)
class Context:
    config: FtpConfig
    authenticator: Authenticator
    bans: BanList
    deliver: Callable[[Arrival], int]


class Authorizer:
    """What pyftpdlib asks of an authorizer once logged in; rights are enforced
    by the handler's own ftp_* methods and the jail, not by perm letters."""

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return True

    def get_perms(self, username: str) -> str:
        return "elr"

    def get_msg_login(self, username: str) -> str:
        return "Logged in."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


class HandlerMixin(_ControlBase):
    """Stockdrop's rules on top of pyftpdlib's FTPHandler / TLS_FTPHandler."""

    ctx: Context  # set on the class built per server start
    # pyftpdlib's own state, which these rules read and reset
    _restart_position: int
    _rnfr: str | None
    _in_dtp_queue: tuple[StagingWriter, str] | None

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        # set before the base __init__, which may call close() on a bad socket
        self.ticket: Ticket | None = server.admitting
        if self.ticket is not None:
            self.ticket.hang_up = self._hang_up
        self.jail: Jail | None = None
        self.sender: Sender | None = None
        self._upload: _Upload | None = None
        self._pending: _Upload | None = None
        self._pending_call: Any = None
        super().__init__(conn, server, ioloop)

    # --- connect and login

    def _hang_up(self, why: str) -> None:
        # called by the gate, from the server's thread, as pyftpdlib's own idle timeout is
        if not self._closed and not self._closing:
            self.respond(BANNED_REPLY if why == BANNED else "421 Login timed out.")
            self.close_when_done()


    def ftp_PASS(self, line: str) -> None:
        if self.authenticated:
            self.respond("503 User already authenticated.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        bans, now = self.ctx.bans, time.time()
        if bans.is_banned(self.remote_ip, now):
            self.respond(BANNED_REPLY)
            self.close_when_done()
            return
        account = None
        if self.username.lower() not in _ANONYMOUS:
            account = self.ctx.authenticator.check_password(self.username, line)
        if account is None:
            known = self.ctx.authenticator.knows(self.username)
            log.info("login_failed", protocol="ftp", user=self.username, remote_addr=self.remote_ip,
                     known_user=known)
            if bans.failed(self.remote_ip, self.username, now, known_user=known):
                self.respond(BANNED_REPLY)
                self.close_when_done()
                return
            self.handle_auth_failed("", line)
            return
        bans.succeeded(self.remote_ip, self.username, now)
        jail = Jail(account.root)
        try:
            jail.ensure_folders()
        except OSError as exc:
            log.error("account_folder_missing", user=account.username, root=str(account.root),
                      error=str(exc))
            self.respond("421 Your folder is not available; please contact the merchant.")
            self.close_when_done()
            return
        self.jail = jail
        protocol = "ftps" if getattr(self, "_ssl_established", False) else "ftp"
        self.sender = Sender(account.source_id, account.username, self.remote_ip, protocol,
                             account.market_id, account.kind)
        self.handle_auth_success(str(account.root), line, "Logged in. Uploads go to /inbox.")
        if self.ticket is not None:
            self.ticket.logged_in()

    # --- helpers

    def _target(self, fspath: str) -> Target | None:
        try:
            return self.fs.target(fspath)
        except JailError as exc:
            self.respond(f"550 {exc}.")
            return None

    def _drop_upload(self) -> None:
        up, self._upload = self._upload, None
        self._pending = None
        if self._pending_call is not None and not self._pending_call.cancelled:
            self._pending_call.cancel()
        self._pending_call = None
        if up is not None:
            up.writer.close()
            discard(up.staged)

    # --- uploads

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        rest, self._restart_position = self._restart_position, 0
        if rest:
            self.respond("554 " + RESUME_REFUSED)
            return None
        t = self._target(file)
        if t is None:
            return None
        if t.area is not Area.INBOX or t.name is None:
            self.respond("550 Uploads go to /inbox.")
            return None
        assert self.jail is not None
        self._drop_upload()  # leftovers of a STOR whose data connection never came
        try:
            staged, fd = self.jail.new_staging_file()
        except OSError as exc:
            log.error("staging_failed", root=str(self.jail.root), error=str(exc))
            self.respond("451 Cannot store the file right now; try again later.")
            return None
        writer = StagingWriter(staged, fd, self.ctx.config.max_file_bytes)
        self._upload = _Upload(staged, t.name, time.monotonic(), writer)
        if self.data_channel is not None:
            self.respond("125 Data connection already open. Transfer starting.")
            self.data_channel.file_obj = writer
            self.data_channel.enable_receiving(self._current_type, "STOR")
        else:
            self.respond("150 File status okay. About to open data connection.")
            self._in_dtp_queue = (writer, "STOR")
        return file

    def ftp_APPE(self, file: str) -> None:
        self.respond("550 " + RESUME_REFUSED)

    def ftp_STOU(self, line: str) -> None:
        self.respond("550 Choose a file name and upload it to /inbox.")

    def on_file_received(self, file: str) -> None:
        up = self._upload
        if up is None or up.writer.name != file:
            return
        self._pending = up
        self._pending_call = self.ioloop.call_later(
            _grace(self.socket, self.ctx.config.completion_grace_s), self._settle,
            _errback=self.handle_error,
        )

    def on_incomplete_file_received(self, file: str) -> None:
        up = self._upload
        if up is not None and up.writer.name == file:
            log.info("upload_incomplete", protocol=self.sender and self.sender.protocol,
                     user=self.username, name=up.name, bytes=up.writer.written)
            self._drop_upload()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if self._pending is not None:
            self._settle(alive=True)  # the client spoke, so it is still there
        if cmd == "STOR" and self.authenticated and arg and not self._stor_allowed(arg):
            # say where uploads go rather than pyftpdlib's generic "outside root"
            self.respond("550 Uploads go to /inbox.")
            return
        super().pre_process_command(line, cmd, arg)

    def _stor_allowed(self, arg: str) -> bool:
        try:
            t = self.fs.target(self.fs.ftp2fs(arg))
        except JailError:
            return False
        return t.area is Area.INBOX and t.name is not None

    def _settle(self, alive: bool = False) -> None:
        up = self._pending
        if up is None or up is not self._upload:
            return
        if not alive and (self._closed or _peer_gone(self.socket)):
            log.info("upload_incomplete", reason="client gone", user=self.username, name=up.name)
            self._drop_upload()
            return
        if self._pending_call is not None and not self._pending_call.cancelled:
            self._pending_call.cancel()
        self._upload = self._pending = self._pending_call = None
        assert self.jail is not None and self.sender is not None
        try:
            what = finish_upload(self.jail, self.ctx.deliver, self.sender, up.staged, up.name,
                                 up.started)
        except Exception:
            log.exception("upload_not_taken", user=self.username, name=up.name)
            if is_temp_name(up.name):
                discard(up.staged)  # only publishing failed; nothing was claimed
            # otherwise leave the staged file: deliver may have claimed it
            self.respond("451 The file could not be taken; please upload it again.")
            return
        self.respond(f"226 Transfer complete; {what}.")

    # --- everything else a sender may do

    def ftp_RETR(self, file: str) -> str | None:
        t = self._target(file)
        if t is None:
            return None
        if t.area is not Area.RESULTS or t.name is None:
            self.respond("550 Downloads come from /results.")
            return None
        assert self.jail is not None
        if not self.jail.is_regular_file(t):
            self.respond("550 No such file in /results.")
            return None
        return super().ftp_RETR(file)

    def _inbox_file(self, path: str, what: str) -> Target | None:
        t = self._target(path)
        if t is None:
            return None
        assert self.jail is not None
        if t.area is not Area.INBOX or not self.jail.is_regular_file(t):
            self.respond(f"550 Only your uploads in /inbox can be {what}.")
            return None
        return t

    def ftp_DELE(self, path: str) -> str | None:
        if self._inbox_file(path, "deleted") is None:
            return None
        return super().ftp_DELE(path)

    def ftp_RNFR(self, path: str) -> None:
        if self._inbox_file(path, "renamed") is not None:
            self._rnfr = path
            self.respond("350 Ready for destination name.")

    def ftp_RNTO(self, path: str) -> Any:
        src_path, self._rnfr = self._rnfr, None
        if not src_path:
            self.respond("503 Bad sequence of commands: use RNFR first.")
            return None
        src, dst = self._target(src_path), self._target(path)
        if src is None or dst is None:
            return None
        if dst.area is not Area.INBOX or dst.name is None:
            self.respond("550 Files can only be renamed within /inbox.")
            return None
        assert self.jail is not None and self.sender is not None
        try:
            what = take_on_rename(self.jail, self.ctx.deliver, self.sender, src, dst)
        except FileNotFoundError:
            self.respond("550 No such file.")
            return None
        except Exception:
            log.exception("upload_not_taken", user=self.username, name=dst.name)
            self.respond("451 The file could not be taken; please try again.")
            return None
        self.respond(f"250 Renaming ok; {what}.")
        return (src_path, path)

    def ftp_MKD(self, path: str) -> None:
        self.respond("550 Creating folders is not allowed.")

    def ftp_RMD(self, path: str) -> None:
        self.respond("550 Removing folders is not allowed.")

    def _on_dtp_close(self) -> None:
        queued = getattr(self, "_in_dtp_queue", None)
        super()._on_dtp_close()
        up = self._upload
        if self._closed or up is None:
            return
        if queued is not None and queued[0] is up.writer:
            # the data connection died before the transfer began (e.g. reset
            # while being accepted): pyftpdlib would leave the client waiting
            self._in_dtp_queue = None
            self._drop_upload()
            self.respond("426 The data connection closed before the upload started; "
                         "nothing was kept.")

    # --- teardown

    def close(self) -> None:
        if self.ticket is not None:
            self.ticket.release()  # its slot is free again
        super().close()
        # whatever was not settled is incomplete (and possibly a stray queued STOR)
        self._drop_upload()


# SITE (chmod, help) and MFMT are not offered at all; REST stays for downloads.
_REMOVED_CMDS = ("SITE", "SITE CHMOD", "SITE HELP", "MFMT")


def commands(base: Any) -> dict[str, Any]:
    return {k: v for k, v in base.proto_cmds.items() if k not in _REMOVED_CMDS}


def _rtt_seconds(sock: socket.socket | None) -> float | None:
    """The kernel's smoothed round-trip time of a TCP connection (Linux), or None."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if sock is None or tcp_info is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 104)
        # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_rtt (µs) is the 16th.
        return struct.unpack_from("I", raw, 68)[0] / 1_000_000 if len(raw) >= 72 else None
    except OSError:
        return None


def _grace(sock: socket.socket | None, ceiling: float) -> float:
    """How long to wait for a killed client's control connection to close too.

    A killed client's two connections close within a fraction of a round trip
    of each other, so a few round trips suffice; a fixed wait would cost every
    upload on a fast link (0.25 s is longer than 200 MB takes on loopback).
    """
    rtt = _rtt_seconds(sock)
    if rtt is None:
        return ceiling
    # The 10 ms floor covers a dying client whose exit is descheduled between
    # closing its two sockets on a busy machine; it costs about 1% of a
    # 200 MB upload on loopback.
    return min(ceiling, max(0.01, 2 * rtt + 0.005))
