"""Delivery settings (a market's ``[export]``, a warehouse's ``[orders_export]``) -> the
``transports`` destination that delivers there."""

from __future__ import annotations

from pathlib import Path

from daemon.settings import DeliverySettings
from daemon.transports.destination import Destination
from daemon.transports.folder import FolderDestination
from daemon.transports.ftp import FtpDestination
from daemon.transports.sftp import SftpDestination, SftpEndpoint

_DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}


def destination_for(export: DeliverySettings) -> Destination:
    if export.transport == "dir":
        return FolderDestination(Path(export.folder))
    assert export.host is not None and export.user is not None  # the settings' validator saw to it
    port = export.port or _DEFAULT_PORTS[export.transport]
    password = export.resolved_password()
    if export.transport == "sftp":
        return SftpDestination(SftpEndpoint(
            host=export.host, port=port, user=export.user, password=password, key_file=export.key_file,
            key_passphrase_env=export.key_passphrase_env, known_hosts=export.known_hosts,
            host_key_fingerprint=export.host_key_fingerprint, timeout_seconds=export.timeout_seconds),
            folder=export.folder)
    assert password is not None
    return FtpDestination(host=export.host, port=port, user=export.user, password=password, folder=export.folder,
                          tls=export.transport == "ftps", timeout_seconds=export.timeout_seconds,
                          ca_file=export.ca_file)
