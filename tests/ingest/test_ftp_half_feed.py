"""FTP stream mode cannot tell a data connection closed half-way from a finished upload.

When the client keeps its control connection and closes the data connection
cleanly (FIN) after half the bytes, the server sees exactly what a finished
upload looks like and answers 226. What stands between that half feed and
the catalogue is the full-feed guard (``scope = "full"`` with ``min_rows`` /
``max_zeroed_percent``): the file is held, nothing is applied. These tests
send the feed over a real ``ftplib`` client to the real FTP endpoint feeding
the real pipeline.
"""

from __future__ import annotations

import ftplib
import io
from collections.abc import Iterator

import pytest

from daemon.auth.accounts import MemoryAuthenticator
from daemon.auth.bans import BanList
from daemon.ingest.arrival import Arrival
from daemon.ingest.endpoints.ftp import FtpConfig, FtpService
from daemon.ingest.outcomes import Outcome
from tests.ingest.conftest import IngestEnv

PASSWORD = "s3cret-pass"
ROWS = 200


def feed(rows: int) -> bytes:
    return ("sku,quantity\n" + "".join(f"SKU-{i:04d},{i + 1}\n" for i in range(rows))).encode()


class Received(list[Outcome]):
    def __init__(self, env: IngestEnv) -> None:
        super().__init__()
        self.env = env

    def __call__(self, arrival: Arrival) -> int:
        upload_id = self.env.pipeline.deliver(arrival)
        self.append(self.env.pipeline.processor.process(upload_id))
        return upload_id


@pytest.fixture
def served(make_env) -> Iterator[tuple[IngestEnv, FtpService, Received]]:  # type: ignore[no-untyped-def]
    env = make_env(feed='scope = "full"\nmax_zeroed_percent = 20\nmin_rows = 150\n')
    info = env.source()
    for folder in (info.inbox, info.results, info.staging):
        folder.mkdir(parents=True, exist_ok=True)
    accounts = MemoryAuthenticator(rounds=4)
    accounts.add("wh1", source_id=info.id, root=info.folder, password=PASSWORD)
    received = Received(env)
    service = FtpService(FtpConfig(host="127.0.0.1", port=0, auth_failed_delay_s=0.05, idle_timeout=60),
                         accounts, BanList(), received)
    service.start()
    yield env, service, received
    service.stop(timeout=30)


def connect(service: FtpService) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=30)
    ftp.connect(*service.address)
    ftp.login("wh1", PASSWORD)
    return ftp


def test_a_half_feed_whose_data_connection_closed_cleanly_is_held_not_applied(served) -> None:  # type: ignore[no-untyped-def]
    env, service, received = served
    whole = feed(ROWS)
    with connect(service) as ftp:
        assert ftp.storbinary("STOR /inbox/stock.csv", io.BytesIO(whole)).startswith("226")
        assert received[-1].status == "applied" and received[-1].counts["rows"] == ROWS
        before = env.quantities()
        # Half the bytes, cut inside a line, then a clean close of the data
        # connection while the control connection stays: stream mode's "done".
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("STOR /inbox/stock.csv")
        data.sendall(whole[: len(whole) // 2])
        data.close()
        assert ftp.voidresp().startswith("226")  # the server cannot know better
        ftp.quit()
    half = received[-1]
    assert len(received) == 2
    assert half.status == "held" and "history approve" in (half.message or "")
    assert env.quantities() == before  # nothing zeroed, the cut line not applied


def test_the_temporary_name_then_rename_convention_takes_only_the_finished_file(served) -> None:  # type: ignore[no-untyped-def]
    _, service, received = served
    whole = feed(ROWS)
    with connect(service) as ftp:
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("STOR /inbox/stock.csv.part")
        data.sendall(whole[: len(whole) // 2])
        data.close()
        ftp.voidresp()
        assert received == []  # a temporary name is not taken, whole or not
        ftp.storbinary("STOR /inbox/stock.csv.part", io.BytesIO(whole))
        assert received == []
        ftp.rename("/inbox/stock.csv.part", "/inbox/stock.csv")
        ftp.quit()
    [done] = received
    assert done.status == "applied" and done.counts["rows"] == ROWS
