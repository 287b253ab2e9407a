"""The FTP file system a sender sees: their jailed folder, and the staging file an
upload is written into.

pyftpdlib asks an ``AbstractedFS`` for every path and file; this one answers
through :class:`Jail` only (never the process cwd), so a sender cannot reach
outside their folder, and downloads come from /results alone.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from pyftpdlib.filesystems import AbstractedFS, FilesystemError

from daemon.ingest.endpoints.jail import Area, Jail, JailError, Target


class StagingWriter:
    """The file object pyftpdlib writes an upload into; enforces the size limit."""

    def __init__(self, path: Path, fd: int, limit: int) -> None:
        self.name = str(path)
        self._file = os.fdopen(fd, "wb")
        self.limit = limit
        self.written = 0
        self.over_limit = False

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self.limit:
            self.over_limit = True
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        return self._file.write(data)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()



class JailedFS(AbstractedFS):
    """Path translation through :class:`Jail`; never touches the process cwd."""

    def __init__(self, root: str, cmd_channel: Any) -> None:
        super().__init__(root, cmd_channel)
        self.jail: Jail = cmd_channel.jail

    def fs2ftp(self, fspath: str) -> str:
        rel = os.path.relpath(os.path.normpath(fspath), os.path.normpath(self.root))
        if rel == ".":
            return "/"
        if rel == ".." or rel.startswith(".." + os.sep):
            return "/.."  # resolves to "/" lexically, but see target(): refused
        return "/" + rel.replace(os.sep, "/")

    def target(self, fspath: str) -> Target:
        rel = os.path.relpath(os.path.normpath(fspath), os.path.normpath(self.root))
        if rel == ".." or rel.startswith(".." + os.sep):
            raise JailError("that path leads outside your folder")
        return self.jail.resolve(self.fs2ftp(fspath))

    def validpath(self, path: str) -> bool:
        try:
            self.target(path)
        except JailError:
            return False
        return True

    def chdir(self, path: str) -> None:
        t = self.target(path)
        if not t.is_folder:
            raise FilesystemError("Not a folder.")
        self.cwd = t.virtual

    def listdir(self, path: str) -> list[str]:
        t = self.target(path)
        if not t.is_folder:
            raise FilesystemError("Not a folder.")
        return self.jail.listing(t)

    listdirinfo = listdir

    def open(self, filename: str, mode: str) -> Any:
        t = self.target(filename)
        if mode != "rb" or t.area is not Area.RESULTS or not self.jail.is_regular_file(t):
            raise FilesystemError("Downloads come from /results.")
        return open(t.real, "rb")

    def mkdir(self, path: str) -> None:
        raise FilesystemError("Creating folders is not allowed.")

    def rmdir(self, path: str) -> None:
        raise FilesystemError("Removing folders is not allowed.")

    def chmod(self, path: str, mode: Any) -> None:
        raise FilesystemError("Changing permissions is not allowed.")

    def utime(self, path: str, timeval: Any) -> None:
        raise FilesystemError("Changing times is not allowed.")

    def mkstemp(self, *args: Any, **kwargs: Any) -> Any:
        raise FilesystemError("Choose a file name in /inbox.")
