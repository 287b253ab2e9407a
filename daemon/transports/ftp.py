"""A destination that is a folder on a market's FTP or FTPS server (ftplib).

Each delivery is one connection: log in (FTPS: ``AUTH TLS`` first, the
certificate verified, then ``PROT P`` so the data channel is encrypted too),
``CWD`` to the folder (never created: a missing folder is a config mistake to
report), binary mode, ``STOR <name>.part``, ``SIZE`` to check what the server
holds (skipped when the server has no SIZE), then ``RNFR``/``RNTO`` over the
final name. A server that refuses to rename over an existing file (a 5xx on
RNTO) counts a final file of the very size as delivered: the retry after a
crash between the rename and our record of it (``destination.py``).

Every failure is a ``TransportError`` naming the server; a 530 at login is
``LoginRefused``. The password is never in a message or a repr.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daemon.transports import TransportError
from daemon.transports.destination import PART_SUFFIX, LoginRefused

# What a failed FTP exchange raises: a server reply (ftplib.Error and its
# error_reply/error_temp/error_perm/error_proto), a socket or TLS failure
# (OSError: refused, reset, timed out, ssl.SSLError), a dropped connection (EOFError).
_FAILURES = (ftplib.Error, OSError, EOFError)
_NO_SIZE = ("500", "502", "504")  # SIZE unknown / not implemented / not for this parameter


def _check_name(name: str) -> None:
    """A delivered name is one plain file name in the folder: no path, no control characters
    (a CR or LF would end the command and start another)."""
    if not name or name in (".", "..") or any(c in "/\\" or c < " " for c in name):
        raise ValueError(f"not a plain file name: {name!r}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    text = str(exc).strip()
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {text or type(exc).__name__}"
    return text or type(exc).__name__


def _code(exc: BaseException) -> str:
    """The three-digit reply code of a server error, else ""."""
    text = str(exc)
    return text[:3] if isinstance(exc, ftplib.Error) and text[:3].isdigit() else ""


class _FtpTls(ftplib.FTP_TLS):
    """FTP_TLS that offers the control connection's TLS session on each data connection:
    many servers (vsftpd's require_ssl_reuse, FileZilla Server, ProFTPD's default) refuse
    a data connection that does not resume it, and ftplib does not do it by itself."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


@dataclass(frozen=True)
class FtpDestination:
    """A folder on an FTP server; ``tls`` for explicit FTPS (AUTH TLS on the same port).

    With ``tls`` the server's certificate is verified against the system's trusted
    CAs, or against ``ca_file`` only when given (a CA bundle, or a self-signed
    server certificate itself), and must name ``host``.
    """

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str
    tls: bool = False
    timeout_seconds: float = 30.0
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        for label, value in (("host", self.host), ("user", self.user), ("password", self.password),
                             ("folder", self.folder)):
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"ftp destination: {label} holds a line break or NUL")  # never the value

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        folder = self.folder if self.folder.startswith("/") else "/" + self.folder
        return f"{'ftps' if self.tls else 'ftp'}://{self.user}@{host}:{self.port}{folder}"

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        _check_name(name)
        if done_marker is not None:
            _check_name(done_marker)
        ftp = self._open()
        try:
            self._put(ftp, name, data)
            if done_marker is not None:
                self._put(ftp, done_marker, b"")
        except BaseException:
            ftp.close()
            raise
        try:
            ftp.quit()  # delivered: a server that drops the goodbye changes nothing
        except _FAILURES:
            pass
        finally:
            ftp.close()

    # --- the session

    @contextlib.contextmanager
    def _step(self, doing: str) -> Iterator[None]:
        """Turn what one exchange can raise into a TransportError saying what was being done."""
        try:
            yield
        except TransportError:
            raise
        except _FAILURES as exc:
            raise TransportError(f"ftp {self._where}: {doing} failed: {_why(exc)}") from exc

    def _open(self) -> ftplib.FTP:
        """A connection logged in, in the folder, in binary mode, passive."""
        ftp: ftplib.FTP
        if self.tls:
            cafile = str(self.ca_file) if self.ca_file is not None else None
            try:
                context = ssl.create_default_context(cafile=cafile)
            except OSError as exc:  # an unreadable or malformed ca_file
                raise TransportError(f"ftp {self._where}: cannot load ca_file {self.ca_file}: {_why(exc)}") from exc
            ftp = _FtpTls(context=context, timeout=self.timeout_seconds)
        else:
            ftp = ftplib.FTP(timeout=self.timeout_seconds)
        try:
            with self._step("connecting"):
                ftp.connect(self.host, self.port)
            ftp.set_pasv(True)
            if isinstance(ftp, ftplib.FTP_TLS):
                try:
                    ftp.auth()  # AUTH TLS, then the handshake
                except _FAILURES as exc:
                    raise TransportError(f"ftp {self._where}: TLS handshake (AUTH TLS) failed: {_why(exc)}") from exc
            self._login(ftp)
            if isinstance(ftp, ftplib.FTP_TLS):
                with self._step("TLS on the data channel (PBSZ 0, PROT P)"):
                    ftp.prot_p()
            try:
                ftp.cwd(self.folder)
            except ftplib.error_perm as exc:
                raise TransportError(f"ftp {self._where}: the folder {self.folder!r} is missing (or may not be"
                                     f" entered) on the server: {_why(exc)}") from exc
            except _FAILURES as exc:
                raise TransportError(f"ftp {self._where}: changing to the folder {self.folder!r} failed:"
                                     f" {_why(exc)}") from exc
            with self._step("switching to binary mode (TYPE I)"):
                ftp.voidcmd("TYPE I")
        except BaseException:
            ftp.close()
            raise
        return ftp

    def _login(self, ftp: ftplib.FTP) -> None:
        try:
            ftp.login(self.user, self.password)
        except ftplib.error_perm as exc:
            if _code(exc) == "530":
                raise LoginRefused(f"ftp {self._where}: login refused for {self.user}: {_why(exc)}") from exc
            raise TransportError(f"ftp {self._where}: login as {self.user} failed: {_why(exc)}") from exc
        except _FAILURES as exc:
            raise TransportError(f"ftp {self._where}: login as {self.user} failed: {_why(exc)}") from exc

    # --- one file

    def _size(self, ftp: ftplib.FTP, name: str) -> int | None:
        """What SIZE says ``name`` holds; None when the server cannot tell (no SIZE)."""
        try:
            return ftp.size(name)
        except ftplib.error_perm as exc:
            if _code(exc) in _NO_SIZE:
                return None
            raise
        except ValueError:  # a 213 reply without a number
            return None

    def _put(self, ftp: ftplib.FTP, name: str, data: bytes) -> None:
        part = name + PART_SUFFIX
        with self._step(f"uploading {part}"):
            ftp.storbinary(f"STOR {part}", io.BytesIO(data))
        with self._step(f"checking the size of {part}"):
            size = self._size(ftp, part)
        if size is not None and size != len(data):
            with contextlib.suppress(*_FAILURES):
                ftp.delete(part)
            raise TransportError(f"ftp {self._where}: the server holds {size} bytes of {part}, not the"
                                 f" {len(data)} sent")
        with self._step(f"renaming {part} (RNFR)"):
            reply = ftp.sendcmd(f"RNFR {part}")
            if not reply.startswith("3"):
                raise ftplib.error_reply(reply)
        try:
            ftp.voidcmd(f"RNTO {name}")
        except ftplib.error_perm as exc:
            self._after_refused_rename(ftp, name, part, len(data), exc)
        except _FAILURES as exc:
            raise TransportError(f"ftp {self._where}: renaming {part} to {name} failed: {_why(exc)}") from exc

    def _after_refused_rename(self, ftp: ftplib.FTP, name: str, part: str, length: int,
                              refusal: ftplib.error_perm) -> None:
        """RNTO got a 5xx: a server that will not rename over an existing file. A final
        file of the same size is this delivery done before (a retry after a crash)."""
        with self._step(f"checking the size of {name} after the server refused to rename over it"):
            try:
                existing = self._size(ftp, name)
            except ftplib.error_perm:
                existing = None  # no such file: the refusal was about something else
        if existing == length:
            with contextlib.suppress(*_FAILURES):
                ftp.delete(part)
            return
        held = "" if existing is None else f"; {name} there holds {existing} bytes, not {length}"
        raise TransportError(f"ftp {self._where}: the server refused to rename {part} to {name}:"
                             f" {_why(refusal)}{held}") from refusal
