"""Build the hosted endpoints from the settings (one place maps keys to configs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from daemon.auth.accounts import DbAuthenticator
from daemon.auth.bans import BanList
from daemon.ingest.pipeline import Pipeline
from daemon.settings import Settings


def endpoint_services(settings: Settings, pipeline: Pipeline, sessions: sessionmaker[Session]) -> list[Any]:
    """FTP, SFTP and remote pulls, in start order, as the settings enable them."""
    listeners = settings.listeners
    bans = BanList(max_failures=listeners.bans.max_failures, window_s=listeners.bans.window_seconds,
                   ban_s=listeners.bans.ban_seconds)  # one list: a guesser is banned from both
    auth = DbAuthenticator(sessions, pipeline.book)
    services: list[Any] = []
    if listeners.ftp.enabled:
        from daemon.ingest.endpoints.ftp import FtpConfig, FtpService

        f = listeners.ftp
        services.append(FtpService(FtpConfig(
            host=f.host, port=f.port,
            passive_ports=range(f.passive_ports[0], f.passive_ports[1] + 1) if f.passive_ports else None,
            masquerade_address=f.masquerade_address, max_connections=f.max_connections,
            max_per_ip=f.max_per_ip, idle_timeout=f.idle_timeout,
            max_file_bytes=f.max_file_bytes or settings.ingest.max_file_bytes,
            tls_cert=f.tls_cert, tls_key=f.tls_key, require_tls=f.require_tls,
        ), auth, bans, pipeline.deliver))
    if listeners.sftp.enabled:
        from daemon.ingest.endpoints.sftp import SftpConfig, SftpService

        s = listeners.sftp
        services.append(SftpService(SftpConfig(
            host=s.host, port=s.port,
            host_key_path=s.host_key or settings.data_dir / "ssh_host_ed25519_key",
            max_file_bytes=s.max_file_bytes or settings.ingest.max_file_bytes,
            idle_timeout=s.idle_timeout, max_connections=s.max_connections,
        ), auth, bans, pipeline.deliver))
    pulled = [s for s in pipeline.book if s.settings.pull is not None]
    if pulled:
        from daemon.ingest.pull import PullService

        services.append(PullService(pulled, sessions, pipeline.deliver))
    return services
