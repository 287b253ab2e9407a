"""An SFTP client session on another machine's server (a warehouse's, a market's).

The server's host key is pinned (by fingerprint and/or ``known_hosts``), never
learned, and every way a connection can fail is a ``TransportError`` with a
sentence saying why.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from daemon.auth.hostkey import fingerprint
from daemon.transports import TransportError
from daemon.transports.destination import PART_SUFFIX, LoginRefused


@dataclass(frozen=True)
class SftpEndpoint:
    """Where to connect and how to log in; at least one host-key pin is required."""

    host: str
    user: str
    port: int = 22
    password: str | None = field(default=None, repr=False)
    key_file: Path | None = None  # a private key (OpenSSH format)
    key_passphrase_env: str | None = None
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None  # "SHA256:..." as ssh-keygen -lf prints it
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.known_hosts is None and self.host_key_fingerprint is None:
            raise ValueError("pin the server's host key with known_hosts or host_key_fingerprint")


class HostKeyRejected(LoginRefused):
    """The server showed a host key that is not the pinned one."""

    def __init__(self, message: str, *, expected: list[str], offered: str, key_type: str) -> None:
        super().__init__(message)
        self.expected, self.offered, self.key_type = expected, offered, key_type


def _known_keys(pull: SftpEndpoint) -> list[paramiko.PKey]:
    """The keys known_hosts pins for this host, as OpenSSH names it."""
    assert pull.known_hosts is not None
    keys = paramiko.HostKeys()
    try:
        keys.load(str(pull.known_hosts))
    except FileNotFoundError:
        return []
    except Exception as exc:  # malformed lines raise from inside paramiko
        raise TransportError(f"cannot read known_hosts {pull.known_hosts}: {exc}") from exc
    # OpenSSH writes "[host]:port" for any port but 22
    name = pull.host if pull.port == 22 else f"[{pull.host}]:{pull.port}"
    entry = keys.lookup(name)
    return list(entry.values()) if entry else []


def _prefer_pinned_types(transport: paramiko.Transport, known: list[paramiko.PKey]) -> None:
    """Ask the server for a key type we have pinned, so a server holding several
    keys does not show one we cannot check (what OpenSSH does too)."""
    types: set[str] = set()
    for key in known:
        name = key.get_name()
        types.update(("rsa-sha2-512", "rsa-sha2-256") if name == "ssh-rsa" else (name,))
    options = transport.get_security_options()
    wanted = tuple(t for t in options.key_types if t in types)
    if wanted:
        options.key_types = wanted


def _verify_host_key(transport: paramiko.Transport, pull: SftpEndpoint,
                     known: list[paramiko.PKey] | None) -> None:
    offered = transport.get_remote_server_key()
    got = fingerprint(offered)
    expected: list[str] = []
    ok = True
    # every configured pin must agree: two pins are never weaker than one
    if pull.host_key_fingerprint is not None:
        pinned = pull.host_key_fingerprint.strip().rstrip("=")
        expected.append(pinned)
        ok = ok and got == pinned
    if known is not None:
        expected.extend(fingerprint(k) for k in known)
        ok = ok and any(k.asbytes() == offered.asbytes() for k in known)
    if not ok:
        raise HostKeyRejected(f"host key {got} ({offered.get_name()}) is not the pinned one"
                              f" ({', '.join(expected) or 'none known for this host'})",
                              expected=expected, offered=got, key_type=offered.get_name())


def _load_key(pull: SftpEndpoint) -> paramiko.PKey:
    assert pull.key_file is not None
    passphrase: bytes | None = None
    if pull.key_passphrase_env is not None:
        value = os.environ.get(pull.key_passphrase_env)
        if value is None:
            raise TransportError(f"key_passphrase_env: {pull.key_passphrase_env} is not set")
        passphrase = value.encode()  # PKey.from_path hands it to cryptography, which wants bytes
    try:
        return paramiko.PKey.from_path(pull.key_file, passphrase)
    except (OSError, paramiko.SSHException, ValueError, TypeError) as exc:
        raise TransportError(f"cannot load key_file {pull.key_file}: {exc}") from exc


def _authenticate(transport: paramiko.Transport, pull: SftpEndpoint) -> None:
    password = pull.password
    try:
        if pull.key_file is not None:
            try:
                transport.auth_publickey(pull.user, _load_key(pull))
            except paramiko.AuthenticationException:
                if password is None:
                    raise
        if not transport.is_authenticated() and password is not None:
            transport.auth_password(pull.user, password)
    except paramiko.AuthenticationException as exc:
        raise LoginRefused(f"authentication failed for {pull.user}: {exc}") from exc
    if not transport.is_authenticated():
        raise LoginRefused(f"authentication failed for {pull.user}")


def open_sftp(pull: SftpEndpoint,
              register: Callable[[paramiko.Transport], None]) -> paramiko.SFTPClient:
    """A logged-in SFTP session; the transport is handed to ``register`` as soon
    as it exists, so stop() can close it mid-handshake or mid-download."""
    known = _known_keys(pull) if pull.known_hosts is not None else None
    try:
        sock = socket.create_connection((pull.host, pull.port), timeout=pull.timeout_seconds)
    except OSError as exc:
        raise TransportError(f"cannot connect to {pull.host}:{pull.port}: {exc}") from exc
    transport = paramiko.Transport(sock)
    register(transport)
    try:
        transport.banner_timeout = transport.handshake_timeout = pull.timeout_seconds
        transport.auth_timeout = pull.timeout_seconds
        if known:
            _prefer_pinned_types(transport, known)
        transport.start_client(timeout=pull.timeout_seconds)
        _verify_host_key(transport, pull, known)
        _authenticate(transport, pull)
        sftp = paramiko.SFTPClient.from_transport(transport)
        if sftp is None:
            raise TransportError("the server refused the sftp subsystem")
        sftp.get_channel().settimeout(pull.timeout_seconds)  # a stalled read must not hang
        return sftp
    except TransportError:
        transport.close()
        raise
    except (OSError, EOFError, paramiko.SSHException) as exc:
        transport.close()
        why = str(exc) or type(exc).__name__
        raise TransportError(f"ssh to {pull.host}:{pull.port} failed: {why}") from exc


@dataclass(frozen=True)
class SftpDestination:
    """A market's folder on its SFTP server (``transports.destination``'s rules).

    The temporary file's size is confirmed by paramiko's ``putfo`` (a stat
    after the write), and it is renamed over the final name with OpenSSH's
    ``posix-rename`` (which replaces an existing file atomically); a server
    without it gets a plain rename, which many refuse over an existing file:
    then a final file of the same size counts as delivered.
    """

    endpoint: SftpEndpoint
    folder: str

    def describe(self) -> str:
        return f"sftp://{self.endpoint.user}@{self.endpoint.host}:{self.endpoint.port}/{self.folder.lstrip('/')}"

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        for each in (name, done_marker):
            if each is not None:
                self._check_name(each)
        transports: list[paramiko.Transport] = []
        sftp = open_sftp(self.endpoint, transports.append)
        try:
            try:
                sftp.chdir(self.folder)
            except (OSError, paramiko.SFTPError) as exc:  # chdir to a file raises SFTPError, not OSError
                raise TransportError(f"{self.describe()}: the folder {self.folder!r} cannot be used:"
                                     f" {self._why(exc)}") from exc
            self._put(sftp, name, data)
            if done_marker is not None:
                self._put(sftp, done_marker, b"")
        except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
            raise TransportError(f"{self.describe()}: delivering {name} failed: {self._why(exc)}") from exc
        finally:
            sftp.close()
            for transport in transports:
                transport.close()

    @staticmethod
    def _check_name(name: str) -> None:
        """One plain file name in the folder (as the folder and FTP destinations require):
        a "/" or ".." would put it somewhere else on the server."""
        if not name or name in (".", "..") or any(c in "/\\" or c < " " for c in name):
            raise ValueError(f"not a plain file name: {name!r}")

    @staticmethod
    def _why(exc: BaseException) -> str:
        if isinstance(exc, paramiko.SFTPError) and len(exc.args) == 2:
            return str(exc.args[1])  # (errno, text)
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        return str(exc) or type(exc).__name__

    def _put(self, sftp: paramiko.SFTPClient, name: str, data: bytes) -> None:
        import io

        part = name + PART_SUFFIX
        try:
            # confirm: a stat after the write; an OSError when the server holds another size
            sftp.putfo(io.BytesIO(data), part, file_size=len(data), confirm=True)
        except OSError as exc:
            if not isinstance(exc, TimeoutError):  # a stalled server would stall the removal too
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException, paramiko.SFTPError):
                    sftp.remove(part)  # a short .part is of use to no one
            raise TransportError(f"{self.describe()}: uploading {part} failed: {self._why(exc)}") from exc
        try:
            sftp.posix_rename(part, name)
            return
        except OSError as exc:
            posix_refusal = exc  # no posix-rename@openssh.com here: a plain rename
        try:
            sftp.rename(part, name)
            return
        except OSError as exc:
            refusal = exc
        try:
            held: int | None = sftp.stat(name).st_size
        except FileNotFoundError:
            held = None  # the refusal was about something else
        if held == len(data):
            # An earlier try (cut off before it was recorded) renamed it already.
            with contextlib.suppress(OSError):
                sftp.remove(part)
            return
        there = f"{name} is not there" if held is None else f"{name} there holds {held} bytes, not {len(data)}"
        raise TransportError(f"{self.describe()}: the server refused to rename {part} to {name}"
                             f" (posix-rename: {self._why(posix_refusal)}; rename: {self._why(refusal)});"
                             f" {there}") from refusal
