"""Build the hosted endpoints from the settings (one place maps keys to configs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from daemon.auth.accounts import DbAuthenticator
from daemon.auth.ban_store import DbBanStore
from daemon.auth.bans import BanList, BanPolicy
from daemon.ingest.pipeline import Pipeline
from daemon.settings import Settings


def endpoint_services(settings: Settings, pipeline: Pipeline, sessions: sessionmaker[Session]) -> list[Any]:
    """FTP, SFTP and remote pulls, in start order, as the settings enable them."""
    listeners = settings.listeners
    b = listeners.bans
    policy = BanPolicy(
        threshold=b.threshold, score_valid=b.score_valid, score_invalid=b.score_invalid,
        score_limit_exceeded=b.score_limit_exceeded, window_s=b.window_seconds, ban_s=b.ban_seconds,
        ban_growth_percent=b.ban_growth_percent, max_ban_s=b.max_ban_seconds, remember_s=b.remember_seconds,
        refresh_s=b.refresh_seconds,
    )
    # one list: a guesser is banned from both; in the database: across restarts and daemons
    bans = BanList(policy, DbBanStore(sessions, node=settings.node))
    auth = DbAuthenticator(sessions, pipeline.book)
    services: list[Any] = []
    if listeners.ftp.enabled:
        from daemon.ingest.endpoints.ftp import FtpConfig, FtpService

        f = listeners.ftp
        services.append(FtpService(FtpConfig(
            host=f.host, port=f.port,
            passive_ports=range(f.passive_ports[0], f.passive_ports[1] + 1) if f.passive_ports else None,
            masquerade_address=f.masquerade_address, max_connections=f.max_connections,
            max_per_ip=f.max_per_ip, max_unauthenticated=f.max_unauthenticated,
            max_unauthenticated_per_ip=f.max_unauthenticated_per_ip, auth_timeout=f.auth_timeout,
            idle_timeout=f.idle_timeout,
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
            idle_timeout=s.idle_timeout, max_connections=s.max_connections, max_per_ip=s.max_per_ip,
            max_unauthenticated=s.max_unauthenticated, max_unauthenticated_per_ip=s.max_unauthenticated_per_ip,
            auth_timeout=s.auth_timeout,
        ), auth, bans, pipeline.deliver))
    pulled = [s for s in pipeline.book if s.settings.pull is not None]
    if pulled:
        from daemon.ingest.pull import PullService

        services.append(PullService(pulled, sessions, pipeline.deliver))
    return services
