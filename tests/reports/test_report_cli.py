"""`stockdrop report send` and `report preview`, from the shell's side; the preview opened in a real browser."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import DigestMark
from tests.conftest import REQUIRE_PG, Database
from tests.helpers import ONE_WAREHOUSE, CliResult, run_cli, write_config
from tests.reports.conftest import SmtpServer, free_port


def config(tmp_path: Path, database: Database, smtp_port: int | None) -> Path:
    body = ONE_WAREHOUSE.replace('timezone = "UTC"', 'timezone = "Europe/Berlin"\n'
                                 'report_recipients = ["buyer@acme.example"]')
    body += '\n[alerts]\nenabled = false\n'  # only the digest in the mailbox
    if smtp_port is not None:
        body += (f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
                 'from_address = "stockdrop@example.com"\ntries = 1\n')
    return write_config(tmp_path, body, database_url=database.url)


def seeded(tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str],
           smtp_port: int | None) -> Callable[..., CliResult]:
    cfg = config(tmp_path, database, smtp_port)

    def cli(*args: str | Path) -> CliResult:
        return run_cli(capsys, "-c", cfg, *args)

    assert cli("db", "upgrade").code == 0
    for name, content in (("good.csv", "sku,quantity\nA1,5\nA2,6\n"), ("mixed.csv", "sku,quantity\nA1,7\nA3,oops\n"),
                          ("bad <1>.csv", "sku,quantity\nX,lots\n")):
        (tmp_path / name).write_text(content)
        done = cli("upload", tmp_path / name, "--source", "wh1")
        assert done.code == (7 if name.startswith("bad") else 0), (name, done)
    return cli


def test_report_send_mails_a_digest_now_and_leaves_the_schedule_where_it_was(
        tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str],
        start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp()
    cli = seeded(tmp_path, database, capsys, server.port)

    sent = cli("report", "send", "--json")

    assert sent.code == 0, sent.err
    [digest] = sent.json()["digests"]
    assert (digest["status"], digest["to"], digest["attempts"]) == ("sent", ["buyer@acme.example"], 1)
    [mail] = server.inbox.received
    text = mail.part("plain")
    assert "3 files received: 1 applied, 1 applied with errors, 1 rejected, 0 held, 0 duplicates" in text
    assert mail.message["Subject"].endswith(": 3 files, 2 files need action")
    [outbox] = cli("outbox", "--kind", "digest", "--json").json()["emails"]
    assert (outbox["id"], outbox["status"]) == (digest["email_id"], "sent")
    engine = make_engine(database.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(DigestMark)).all() == []  # the scheduled digest still covers its day
    finally:
        engine.dispose()


def test_report_send_exits_9_when_the_server_is_down_and_the_mail_stays_owed(
        tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    cli = seeded(tmp_path, database, capsys, free_port())
    sent = cli("report", "send")
    assert sent.code == 9
    assert "digest 1 to buyer@acme.example: pending (" in sent.out and "ConnectionRefusedError" in sent.out
    [outbox] = cli("outbox", "--json").json()["emails"]
    assert (outbox["kind"], outbox["status"], outbox["attempts"]) == ("digest", "pending", 1)


def test_report_send_says_why_it_cannot_send(tmp_path: Path, database: Database,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cli = seeded(tmp_path, database, capsys, None)
    refused = cli("report", "send")
    assert refused.code == 1 and "there is no [smtp] in the config" in refused.err
    late = cli("report", "preview", "--format", "text", "--since", "next tuesday")
    assert late.code == 1 and "--since: not an ISO date or time: 'next tuesday'" in late.err


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def table(self, first_header: str) -> dict[str, list[str]]:
        found = next(t for t in self.tables if t and t[0][:1] == [first_header])
        return {row[0]: row[1:] for row in found[1:]}


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") or REQUIRE_PG:
        pytest.fail("Debian's chromium is needed to open the preview (apt-get install -y chromium); "
                    "CI must not skip this test")
    pytest.skip("no chromium here (apt-get install -y chromium)")


def browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: containers often run tests as root, where chromium's sandbox will not start.
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the page is the same on either
def test_report_preview_renders_html_that_a_browser_shows_with_the_counts(
        tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str],
        start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp()
    cli = seeded(tmp_path, database, capsys, server.port)
    page = tmp_path / "digest.html"

    shown = cli("report", "preview", "--format", "html", "-o", page)

    assert shown.code == 0, shown.err
    assert "# [stockdrop] acme: upload history " in shown.err and "nothing sent" in shown.err
    assert server.inbox.received == [] and cli("outbox", "--json").json()["emails"] == []
    text = cli("report", "preview", "--format", "text")
    assert text.code == 0 and "Files by source" in text.out and "bad <1>.csv" in text.out
    html = page.read_text(encoding="utf-8")
    assert "bad &lt;1&gt;.csv" in html and "bad <1>" not in html

    browser = chromium()
    shot = tmp_path / "digest.png"
    browse(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=900,1300", page.as_uri())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (900, 1300)  # the IHDR: the window it was drawn in
    dom = browse(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    tables = Tables()
    tables.feed(dom)
    by_source = tables.table("Source")
    #                            received applied errors rejected held dup rows-applied rows-rejected
    assert by_source["wh1"] == ["3", "1", "1", "1", "0", "0", "3", "2"]
    assert by_source["merchant-fulfilled"] == ["0"] * 8
    assert "Upload 3: bad <1>.csv (wh1), rejected" in dom.replace("&lt;", "<").replace("&gt;", ">")
