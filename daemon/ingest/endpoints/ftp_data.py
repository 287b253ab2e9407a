"""The FTP data connection: pyftpdlib's DTPHandler with two corrections.

pyftpdlib's recv treats a connection *reset* like a clean end of file, so a
dropped upload would look complete; and it replies 226 the moment the data
connection ends, before anyone knows whether the client is still alive. The
mixins here note the reset, hold the 226 back for the control channel (see
``ftp_handler``) and give a clear 552 when an upload is too big.
"""

from __future__ import annotations

import logging

from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY, _RetryError

from daemon.ingest.endpoints.ftp_fs import StagingWriter

try:  # FTPS needs pyOpenSSL; plain FTP works without it
    from OpenSSL import SSL

    _SysCallError: type[Exception] = SSL.SysCallError
except ImportError:  # pragma: no cover

    class _SysCallError(Exception):  # type: ignore[no-redef]
        pass


class RecvMixin:
    """Sits just above pyftpdlib's socket recv, which treats a connection *reset*
    like a clean end of file (and so a dropped upload as a complete one);
    note the reset so the data channel can call the upload incomplete."""

    connection_reset = False

    def recv(self, buffer_size: int) -> bytes:
        try:
            data = self.socket.recv(buffer_size)  # type: ignore[attr-defined]
        except _SysCallError as err:  # TLS: pyftpdlib's SSL layer above handles it
            if err.args and err.args[0] in _ERRNOS_DISCONNECTED:
                self.connection_reset = True
            raise
        except OSError as err:
            if err.errno in _ERRNOS_DISCONNECTED:
                self.connection_reset = True
                self.handle_close()  # type: ignore[attr-defined]
                return b""
            if err.errno in _ERRNOS_RETRY:
                raise _RetryError from err
            raise
        if not data:
            self.handle_close()  # type: ignore[attr-defined]
            return b""
        return data


class DtpMixin:
    """Data channel: hold back the 226 of a received file; clear 552 when too big;
    a reset connection is an incomplete upload."""

    def handle_error(self) -> None:
        writer = self.file_obj  # type: ignore[attr-defined]
        if isinstance(writer, StagingWriter) and writer.over_limit:
            self._resp = (  # type: ignore[attr-defined]
                f"552 The file exceeds the maximum size of {writer.limit} bytes; nothing was kept.",
                logging.getLogger("pyftpdlib").info,
            )
            self.close()
            return
        super().handle_error()  # type: ignore[misc]

    def close(self) -> None:
        if (
            not self._closed  # type: ignore[attr-defined]
            and self.receive  # type: ignore[attr-defined]
            and getattr(self, "connection_reset", False)
        ):
            self.transfer_finished = False
            self._resp = (
                "426 The data connection was reset; nothing was kept.",
                logging.getLogger("pyftpdlib").info,
            )
        resp = self._resp  # type: ignore[attr-defined]
        if (
            not self._closed  # type: ignore[attr-defined]
            and self.receive  # type: ignore[attr-defined]
            and self.transfer_finished  # type: ignore[attr-defined]
            and resp
            and resp[0].startswith("226")
        ):
            # the control channel replies once it knows the client is alive
            self._resp = ()  # type: ignore[attr-defined]
        super().close()  # type: ignore[misc]
