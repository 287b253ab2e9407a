"""The FTP data connection: pyftpdlib's DTPHandler with two corrections.

pyftpdlib's recv treats a connection *reset* like a clean end of file, so a
dropped upload would look complete; and it replies 226 the moment the data
connection ends, before anyone knows whether the client is still alive. The
mixins here note the reset, hold the 226 back for the control channel (see
``ftp_handler``) and give a clear 552 when an upload is too big.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY, _RetryError

from daemon.ingest.endpoints.ftp_fs import StagingWriter

try:  # FTPS needs pyOpenSSL; plain FTP works without it
    from OpenSSL import SSL

    _SysCallError: type[Exception] = SSL.SysCallError
except ImportError:  # pragma: no cover

    class _SysCallError(Exception):  # type: ignore[no-redef]  # the stand-in when pyOpenSSL is missing
        pass


if TYPE_CHECKING:
    # pyftpdlib ships no types: to mypy the base is Any, at run time a plain mixin.
    from pyftpdlib.handlers import DTPHandler as _DataBase
else:
    _DataBase = object


class RecvMixin(_DataBase):
    """Sits just above pyftpdlib's socket recv, which treats a connection *reset*
    like a clean end of file (and so a dropped upload as a complete one);
    note the reset so the data channel can call the upload incomplete."""

    connection_reset = False

    def recv(self, buffer_size: int) -> bytes:
        try:
            data = self.socket.recv(buffer_size)
        except _SysCallError as err:  # TLS: pyftpdlib's SSL layer above handles it
            if err.args and err.args[0] in _ERRNOS_DISCONNECTED:
                self.connection_reset = True
            raise
        except OSError as err:
            if err.errno in _ERRNOS_DISCONNECTED:
                self.connection_reset = True
                self.handle_close()
                return b""
            if err.errno in _ERRNOS_RETRY:
                raise _RetryError from err
            raise
        if not data:
            self.handle_close()
            return b""
        return data


class DtpMixin(_DataBase):
    """Data channel: hold back the 226 of a received file; clear 552 when too big;
    a reset connection is an incomplete upload."""

    _resp: tuple[Any, ...]  # pyftpdlib's pending reply: (text, log function), or ()

    def handle_error(self) -> None:
        writer = self.file_obj
        if isinstance(writer, StagingWriter) and writer.over_limit:
            self._resp = (
                f"552 The file exceeds the maximum size of {writer.limit} bytes; nothing was kept.",
                logging.getLogger("pyftpdlib").info,
            )
            self.close()
            return
        super().handle_error()

    def close(self) -> None:
        if (
            not self._closed
            and self.receive
            and getattr(self, "connection_reset", False)
        ):
            self.transfer_finished = False
            self._resp = (
                "426 The data connection was reset; nothing was kept.",
                logging.getLogger("pyftpdlib").info,
            )
        resp = self._resp
        if (
            not self._closed
            and self.receive
            and self.transfer_finished
            and resp
            and resp[0].startswith("226")
        ):
            # the control channel replies once it knows the client is alive
            self._resp = ()
        super().close()
