"""The assembled daemon: a file dropped into an inbox comes back as an alert in a real mailbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.runtime import assemble
from daemon.settings import load_settings
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, write_config
from tests.reports.conftest import SmtpServer


def test_a_rejected_file_dropped_into_the_inbox_of_the_assembled_daemon_is_mailed_by_its_email_service(
        database: Database, tmp_path: Path, start_smtp: Callable[..., SmtpServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_smtp(tls=True)
    body = ONE_WAREHOUSE.replace('timezone = "UTC"', 'timezone = "UTC"\nreport_recipients = ["buyer@acme.example"]')
    body += (f'\n[ingest]\nsettle_seconds = 0.1\nworkers = 1\n\n[smtp]\nhost = "127.0.0.1"\nport = {server.port}\n'
             f'security = "starttls"\nca_file = "{server.cert}"\nuser = "stockdrop"\npassword_env = "SMTP_PW"\n'
             'from_address = "stockdrop@example.com"\npoll_seconds = 0.2\n')
    monkeypatch.setenv("SMTP_PW", "mail-s3cret")
    settings = load_settings(write_config(tmp_path, body, database_url=database.url))
    services = assemble.build_services(settings, database.engine)
    assert {"email", "digest"} <= {s.name for s in services}
    started = []
    try:
        for service in services:
            service.start()
            started.append(service)
        inbox = settings.inbox("acme", settings.merchants[0].sources[0])
        (inbox / "bad.csv.part").write_text("sku,quantity\nA,many\n")
        (inbox / "bad.csv.part").rename(inbox / "bad.csv")
        deadline = time.monotonic() + 60
        while not server.inbox.received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for service in reversed(started):
            service.stop(10)
    [mail] = server.inbox.received
    assert mail.rcpt_tos == ["buyer@acme.example"] and server.inbox.logins == ["stockdrop"]
    assert mail.message["Subject"] == "[stockdrop] acme/wh1: File bad.csv rejected"
    assert "Why: no valid rows: 1 row error(s)." in mail.part("plain")
