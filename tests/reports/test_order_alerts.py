"""A warehouse whose order files keep failing: its team is told, over real SMTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.reports.alerts import Alerts
from daemon.reports.outbox import Mailer
from daemon.settings import parse_settings
from tests.export.test_order_files import ORDERED, Flaky, make_world, parsers  # noqa: F401 - their world
from tests.reports.conftest import SmtpServer


def test_a_warehouse_whose_order_files_keep_failing_alerts_its_recipients(
        make_world: Callable[..., Any], start_smtp: Callable[..., SmtpServer]) -> None:  # noqa: F811
    world = make_world(failing_after=2)
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    server = start_smtp()
    smtp = {"host": "127.0.0.1", "port": server.port, "security": "none", "from_address": "stockdrop@example.com"}
    merchant = world.settings.merchants[0]
    [wh] = [s for s in merchant.sources if s.name == "wh"]
    merchant = merchant.model_copy(update={
        "report_recipients": ["buyer@acme.example"],
        "sources": [wh.model_copy(update={"report_recipients": ["ops@3pl.example"]}),
                    *[s for s in merchant.sources if s.name != "wh"]]})
    settings = world.settings.model_copy(update={"smtp": parse_settings({"smtp": smtp}, base=world.out).smtp,
                                                 "merchants": [merchant]})
    alerts = Alerts(world.sessions, settings)
    [sent] = world.run(destination=Flaky(world.out, down=9), alert=alerts.order_export_failing)
    assert sent.status == "failing"
    assert settings.smtp is not None
    Mailer(world.sessions, settings.smtp, node="n1").send_pending()
    [mail] = server.inbox.received
    assert mail.message["Subject"] == "[stockdrop] acme: order files to wh are failing"
    assert mail.message["To"] == "ops@3pl.example"  # the warehouse's own recipients, not the merchant's
    text = mail.part("plain")
    assert f"could not deliver order file {sent.export_id} ({sent.file_name})" in text
    assert "1 order line(s)" in text and "stockdrop orders export wh" in text
    assert "[merchants.sources.orders_export]" in text
