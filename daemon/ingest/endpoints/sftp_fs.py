"""What an SFTP session may do with files: its jailed folder, uploads and downloads.

An upload is written to ``<root>/.staging/`` at the offsets the client sends and
is taken only when the client closes the handle and every byte from 0 to the
end was written (the written ranges are tracked for that); a connection lost
before the close discards it.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import paramiko
import structlog
from paramiko.message import Message
from paramiko.sftp import _VERSION as SFTP_VERSION
from paramiko.sftp import CMD_CLOSE, CMD_INIT, CMD_VERSION, SFTPError
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_handle import SFTPHandle
from paramiko.sftp_server import SFTPServer
from paramiko.sftp_si import SFTPServerInterface

from daemon.auth.accounts import Account
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
    from daemon.ingest.endpoints.sftp import Session, SshServer

log = structlog.get_logger(__name__)

OK = paramiko.SFTP_OK
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class _Refusal(int):
    """An SFTP status code carrying the sentence the client should see."""

    text: str

    def __new__(cls, code: int, text: str) -> Self:
        obj = super().__new__(cls, code)
        obj.text = text
        return obj


def _denied(text: str) -> _Refusal:
    return _Refusal(paramiko.SFTP_PERMISSION_DENIED, text)


def _failure(text: str) -> _Refusal:
    return _Refusal(paramiko.SFTP_FAILURE, text)


class _Upload(SFTPHandle):
    """A file being uploaded: staged, checked for gaps, taken on close."""

    def __init__(self, fs: _JailedSftp, name: str, staged: Path, fd: int, flags: int) -> None:
        super().__init__(flags)
        self.fs = fs
        self.name = name
        self.staged = staged
        self.fd = fd
        self.started = time.monotonic()
        self.limit = fs.ctx.config.max_file_bytes
        self.spans: list[list[int]] = []  # written [start, end) ranges, sorted, disjoint
        self.error: _Refusal | None = None
        self.done = False

    def write(self, offset: int, data: bytes) -> int:
        if self.error is not None:
            return self.error
        end = offset + len(data)
        if end > self.limit:
            self.error = _failure(
                f"The file exceeds the maximum size of {self.limit} bytes; nothing will be kept."
            )
            return self.error
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        self._cover(offset, end)
        self.fs.session.touch()
        return OK

    def _cover(self, start: int, end: int) -> None:
        if start == end:
            return
        spans = self.spans
        last = spans[-1] if spans else None
        if last is not None and last[0] <= start <= last[1]:  # the usual, sequential case
            last[1] = max(last[1], end)
            return
        spans.append([start, end])
        spans.sort()
        merged = [spans[0]]
        for s, e in spans[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.spans = merged

    def is_whole(self) -> bool:
        return not self.spans or (len(self.spans) == 1 and self.spans[0][0] == 0)

    def read(self, offset: int, length: int) -> int:
        return paramiko.SFTP_OP_UNSUPPORTED

    def stat(self) -> SFTPAttributes | int:
        try:
            return SFTPAttributes.from_stat(os.fstat(self.fd))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr: SFTPAttributes) -> int:
        return OK  # times/modes of an upload are not kept; accept so clients do not fail

    def _close_fd(self) -> None:
        if not self.done:
            self.done = True
            os.close(self.fd)

    def finish(self) -> int:
        """The client's CLOSE: take the file if it is whole."""
        if self.done:
            return OK
        self._close_fd()
        if self.error is not None or not self.is_whole():
            discard(self.staged)
            log.info("upload_incomplete", protocol="sftp", reason="gaps or too large",
                     user=self.fs.sender.user, name=self.name)
            return self.error or _failure("Not every byte of the file was written; nothing was kept.")
        size = self.spans[0][1] if self.spans else 0
        try:
            finish_upload(self.fs.jail, self.fs.ctx.deliver, self.fs.sender, self.staged,
                          self.name, self.started)
        except Exception:
            log.exception("upload_not_taken", user=self.fs.sender.user, name=self.name)
            if is_temp_name(self.name):
                discard(self.staged)  # only publishing failed; nothing was claimed
            return _failure("The file could not be taken; please upload it again.")
        if not is_temp_name(self.name):
            self.fs.remember(self.name, size)
        return OK

    def close(self) -> None:
        """Called by paramiko when the session ends without CLOSE: incomplete."""
        if not self.done:
            self._close_fd()
            discard(self.staged)
            log.info("upload_incomplete", protocol="sftp", reason="connection lost",
                     user=self.fs.sender.user, name=self.name)


class _Download(SFTPHandle):
    def __init__(self, f: Any, flags: int) -> None:
        super().__init__(flags)
        self.readfile = f

    def stat(self) -> SFTPAttributes | int:
        try:
            return SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def write(self, offset: int, data: bytes) -> int:
        return _denied("Files in /results are read-only.")


class _JailedSftp(SFTPServerInterface):
    """File operations, each checked against the jail and the rights."""

    def __init__(self, server: SshServer, session: Session, account: Account) -> None:
        super().__init__(server)
        self.session = session
        self.ctx = session.ctx
        self.jail = Jail(account.root)
        self.sender = Sender(account.source_id, account.username, session.remote_addr, "sftp",
                             account.market_id, account.kind)
        # files this session just handed over: clients (paramiko's put, WinSCP)
        # stat the name after uploading to confirm it, though it is already gone
        self.taken: dict[str, SFTPAttributes] = {}

    def remember(self, name: str, size: int) -> None:
        attr = SFTPAttributes()
        attr.filename, attr.st_size, attr.st_mode = name, size, 0o100600
        attr.st_mtime = attr.st_atime = int(time.time())
        self.taken[name] = attr
        if len(self.taken) > 100:  # bounded: only the last few matter
            del self.taken[next(iter(self.taken))]

    def _resolve(self, path: str) -> Target:
        return self.jail.resolve(path)

    def canonicalize(self, path: str) -> str:
        try:
            return self.jail.normalize(path)
        except JailError:
            return "/"

    def list_folder(self, path: str) -> list[SFTPAttributes] | int:
        try:
            t = self._resolve(path)
        except JailError as exc:
            return _denied(str(exc))
        if not t.is_folder:
            return paramiko.SFTP_NO_SUCH_FILE
        out = []
        for name in self.jail.listing(t):
            try:
                out.append(SFTPAttributes.from_stat(os.lstat(t.real / name), filename=name))
            except OSError:
                continue  # vanished meanwhile (taken or deleted)
        return out

    def stat(self, path: str) -> SFTPAttributes | int:
        try:
            t = self._resolve(path)
        except JailError as exc:
            return _denied(str(exc))
        if not t.is_folder and not self.jail.is_regular_file(t):
            if t.area is Area.INBOX and t.name in self.taken:
                return self.taken[t.name]
            return paramiko.SFTP_NO_SUCH_FILE
        try:
            return SFTPAttributes.from_stat(os.stat(t.real), filename=t.name or t.virtual)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    lstat = stat  # symlinks are never shown, so both look the same

    def open(self, path: str, flags: int, attr: SFTPAttributes) -> SFTPHandle | int:
        try:
            t = self._resolve(path)
        except JailError as exc:
            return _denied("Uploads go to /inbox." if flags & _WRITE_FLAGS else str(exc))
        if flags & _WRITE_FLAGS:
            if t.area is not Area.INBOX or t.name is None:
                return _denied("Uploads go to /inbox.")
            if flags & os.O_APPEND:
                return _failure("Resume is not supported; upload the whole file again.")
            if flags & os.O_EXCL and t.real.exists():
                return paramiko.SFTP_FAILURE
            try:
                staged, fd = self.jail.new_staging_file()
            except OSError as exc:
                log.error("staging_failed", root=str(self.jail.root), error=str(exc))
                return _failure("Cannot store the file right now; try again later.")
            self.taken.pop(t.name, None)
            return _Upload(self, t.name, staged, fd, flags)
        if t.area is not Area.RESULTS or t.name is None:
            return _denied("Downloads come from /results.")
        if not self.jail.is_regular_file(t):
            return paramiko.SFTP_NO_SUCH_FILE
        try:
            return _Download(open(t.real, "rb"), flags)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def _inbox_file(self, path: str, what: str) -> Target | _Refusal:
        try:
            t = self._resolve(path)
        except JailError as exc:
            return _denied(str(exc))
        if t.area is not Area.INBOX or not self.jail.is_regular_file(t):
            return _denied(f"Only your uploads in /inbox can be {what}.")
        return t

    def remove(self, path: str) -> int:
        t = self._inbox_file(path, "deleted")
        if isinstance(t, int):
            return t
        try:
            t.real.unlink()
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return OK

    def _rename(self, oldpath: str, newpath: str, overwrite: bool) -> int:
        src = self._inbox_file(oldpath, "renamed")
        if isinstance(src, int):
            return src
        try:
            dst = self._resolve(newpath)
        except JailError as exc:
            return _denied(str(exc))
        if dst.area is not Area.INBOX or dst.name is None:
            return _denied("Files can only be renamed within /inbox.")
        if not overwrite and dst.real.exists():
            return _failure(f"{dst.virtual} already exists.")
        try:
            size = src.real.stat().st_size
            what = take_on_rename(self.jail, self.ctx.deliver, self.sender, src, dst)
        except FileNotFoundError:
            return paramiko.SFTP_NO_SUCH_FILE
        except Exception:
            log.exception("upload_not_taken", user=self.sender.user, name=dst.name)
            return _failure("The file could not be taken; please try again.")
        if what == "file received":
            self.remember(dst.name, size)
        return OK

    def rename(self, oldpath: str, newpath: str) -> int:
        return self._rename(oldpath, newpath, overwrite=False)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._rename(oldpath, newpath, overwrite=True)

    def mkdir(self, path: str, attr: SFTPAttributes) -> int:
        return _denied("Creating folders is not allowed.")

    def rmdir(self, path: str) -> int:
        return _denied("Removing folders is not allowed.")

    def chattr(self, path: str, attr: SFTPAttributes) -> int:
        t = self._inbox_file(path, "changed")
        return t if isinstance(t, int) else OK  # accepted and ignored, like on a handle

    def symlink(self, target_path: str, path: str) -> int:
        return _denied("Links are not allowed.")

    def readlink(self, path: str) -> int:
        return paramiko.SFTP_OP_UNSUPPORTED


class SftpServer(SFTPServer):
    """paramiko's SFTP server with: clear status texts, CLOSE that can fail,
    the posix-rename extension advertised, and per-session bookkeeping."""

    def __init__(self, channel: paramiko.Channel, name: str, server: SshServer,
                 session: Session) -> None:
        username = channel.get_transport().get_username()
        account = session.accounts[username]
        super().__init__(channel, name, server, _JailedSftp, session, account)
        self.session = session
        session.threads.append(self)

    def _send_server_version(self) -> int:
        # as paramiko's, plus posix-rename@openssh.com so OpenSSH clients use it
        t, data = self._read_packet()
        if t != CMD_INIT:
            raise SFTPError("Incompatible sftp protocol")
        version = struct.unpack(">I", data[:4])[0]
        msg = Message()
        msg.add_int(SFTP_VERSION)
        msg.add("check-file", "md5,sha1", "posix-rename@openssh.com", "1")
        self._send_packet(CMD_VERSION, msg)
        return version

    def _send_status(self, request_number: int, code: int, desc: str | None = None) -> None:
        if desc is None and isinstance(code, _Refusal):
            desc = code.text
        super()._send_status(request_number, int(code), desc)

    def _process(self, t: int, request_number: int, msg: Message) -> None:
        self.session.touch()
        if t != CMD_CLOSE:
            super()._process(t, request_number, msg)
            return
        # paramiko's CLOSE always answers OK; an upload's close is when it is
        # taken, and the client must hear if that failed
        handle = msg.get_binary()
        if handle in self.folder_table:
            del self.folder_table[handle]
            self._send_status(request_number, OK)
        elif handle in self.file_table:
            f = self.file_table.pop(handle)
            if isinstance(f, _Upload):
                self._send_status(request_number, f.finish())
            else:
                f.close()
                self._send_status(request_number, OK)
        else:
            self._send_status(request_number, paramiko.SFTP_BAD_MESSAGE, "Invalid handle")
