"""A permissive SFTP server over a tmp folder, on 127.0.0.1 port 0: another
machine's server (a warehouse's for pulls, a market's for exports).

Any path under its root may be listed, read, written, renamed and removed.
Its switches make it misbehave on purpose: ``deny_remove`` (no delete, no
rename), ``posix_rename`` off (no ``posix-rename@openssh.com``, as some
servers), ``short_by`` (stores that many bytes fewer than written and says
nothing), ``user``/``password`` (the only login it takes; ``logins`` lists
who tried one). ``calls`` records every open, rename, removal and mkdir it
is asked for, and ``watch``, when set, is called (on the server's thread)
just before each, to look at the folder as it was then.

No pytest here: the latency bench serves a market from it too. The
``open_server`` fixture is in tests/conftest.py.
"""

from __future__ import annotations

import logging
import os
import posixpath
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paramiko

OLD = 1_600_000_000  # a settled mtime for remote files
_WRITING = os.O_WRONLY | os.O_RDWR
_LOG_CHANNEL = "tests.remote_sftp.transport"


class _NotResets(logging.Filter):
    """A client closes its socket right after its last request (paramiko's does), so the
    server's transport sees a reset: expected here, not worth an error line in the output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection reset by peer" not in record.getMessage()


logging.getLogger(_LOG_CHANNEL).addFilter(_NotResets())


class _File(paramiko.SFTPHandle):
    """An open file; a file open for writing is cut short by ``short_by`` bytes when closed."""

    def __init__(self, flags: int, f: IO[bytes], *, short_by: int = 0) -> None:
        super().__init__(flags)
        self.file, self.short_by = f, short_by
        self.readfile = f
        if flags & _WRITING:
            self.writefile = f

    def stat(self) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.file.fileno()))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def close(self) -> None:
        if self.short_by and not self.file.closed and getattr(self, "writefile", None) is not None:
            self.file.flush()
            size = os.fstat(self.file.fileno()).st_size
            self.file.truncate(max(0, size - self.short_by))  # and the reply is still OK
        super().close()


class OpenFolder(paramiko.SFTPServerInterface):
    def __init__(self, server: paramiko.ServerInterface, remote: OpenServer) -> None:
        super().__init__(server)
        self.remote = remote

    def _real(self, path: str) -> Path:
        return self.remote.root / self.canonicalize(path).lstrip("/")

    def _note(self, op: str, *paths: str) -> None:
        call = (op, *(self.canonicalize(p) for p in paths))
        if self.remote.watch is not None:
            self.remote.watch(call)
        self.remote.calls.append(call)

    def canonicalize(self, path: str) -> str:
        return posixpath.normpath("/" + path.lstrip("/"))  # normpath keeps a leading "//"

    def list_folder(self, path: str) -> Any:
        try:
            folder = self._real(path)
            look = os.stat if self.remote.list_follows_links else os.lstat
            return [paramiko.SFTPAttributes.from_stat(look(folder / n), filename=n)
                    for n in os.listdir(folder)]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def stat(self, path: str) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def lstat(self, path: str) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.lstat(self._real(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def open(self, path: str, flags: int, attr: Any) -> Any:
        """``flags`` are os.open's, as paramiko converts them."""
        writing = bool(flags & _WRITING)
        self._note("open-write" if writing else "open-read", path)
        try:
            if not writing:
                return _File(flags, open(self._real(path), "rb"))  # the handle closes it
            fd = os.open(self._real(path), flags, 0o644)
            mode = "ab" if flags & os.O_APPEND else ("r+b" if flags & os.O_RDWR else "wb")
            return _File(flags, os.fdopen(fd, mode), short_by=self.remote.short_by)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def remove(self, path: str) -> int:
        self._note("remove", path)
        if self.remote.deny_remove:
            return paramiko.SFTP_PERMISSION_DENIED
        try:
            self._real(path).unlink()
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return paramiko.SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        """The plain SFTP rename: refused over an existing name, as many servers do."""
        self._note("rename", oldpath, newpath)
        if self.remote.deny_remove or os.path.lexists(self._real(newpath)):
            return paramiko.SFTP_FAILURE
        try:
            os.rename(self._real(oldpath), self._real(newpath))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return paramiko.SFTP_OK

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        """OpenSSH's extension: replaces an existing name atomically."""
        self._note("posix_rename", oldpath, newpath)
        if not self.remote.posix_rename:
            return paramiko.SFTP_OP_UNSUPPORTED
        if self.remote.deny_remove:
            return paramiko.SFTP_FAILURE
        try:
            os.replace(self._real(oldpath), self._real(newpath))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return paramiko.SFTP_OK

    def mkdir(self, path: str, attr: Any) -> int:
        self._note("mkdir", path)
        try:
            self._real(path).mkdir()
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return paramiko.SFTP_OK


class Login(paramiko.ServerInterface):
    def __init__(self, remote: OpenServer) -> None:
        self.remote = remote

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        self.remote.logins.append(username)
        ok = (username, password) == (self.remote.user, self.remote.password)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


@dataclass
class OpenServer:
    root: Path
    key: paramiko.PKey
    deny_remove: bool = False
    posix_rename: bool = True
    short_by: int = 0
    list_follows_links: bool = False  # a server whose listing shows a symlink's target
    user: str = "puller"
    password: str = field(default="pw", repr=False)
    port: int = 0
    transports: list[paramiko.Transport] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)  # who tried a password
    watch: Callable[[tuple[str, ...]], None] | None = None

    def serve(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            t = paramiko.Transport(conn)
            t.set_log_channel(_LOG_CHANNEL)
            t.add_server_key(self.key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, OpenFolder, self)
            self.transports.append(t)
            t.start_server(event=threading.Event(), server=Login(self))
        self._listener.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for t in self.transports:
            t.close()
        for t in self.transports:
            t.join(5)

    def put(self, name: str, data: bytes, mtime: int = OLD) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        return path

