from __future__ import annotations

from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.settings import MERCHANT_FULFILLED, find_config, load_settings, parse_settings


def problems_of(raw: dict, base: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, base=base)
    return dict(info.value.problems)


def test_an_empty_config_is_valid_and_uses_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    s = parse_settings({}, base=tmp_path)
    assert s.data_dir == tmp_path / "data"
    assert s.database_url == f"sqlite:///{tmp_path / 'data' / 'stockdrop.db'}"


def test_every_merchant_gets_a_merchant_fulfilled_source(tmp_path: Path) -> None:
    s = parse_settings({"merchants": [{"name": "m", "sources": [{"name": "wh"}]}]}, base=tmp_path)
    names = [src.name for src in s.merchants[0].all_sources()]
    assert names == [MERCHANT_FULFILLED, "wh"]


def test_a_bad_key_is_named_with_its_full_path(tmp_path: Path) -> None:
    raw = {"merchants": [{"name": "m", "sources": [{"name": "a"}, {"name": "b", "kind": "shop"}]}]}
    problems = problems_of(raw, tmp_path)
    assert "merchants[0].sources[1].kind" in problems
    assert "warehouse" in problems["merchants[0].sources[1].kind"]


def test_a_missing_drop_folder_is_reported_with_its_key(tmp_path: Path) -> None:
    raw = {"merchants": [{"name": "m", "sources": [{"name": "a"}, {"name": "b", "drop_folder": "nowhere"}]}]}
    problems = problems_of(raw, tmp_path)
    assert problems["merchants[0].sources[1].drop_folder"].startswith("folder does not exist")


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    raw = {
        "colour": "blue",
        "ingest": {"workers": 0},
        "merchants": [{"name": "m", "timezone": "Mars/Olympus", "report_recipients": ["nobody"],
                       "sources": [{"name": "w", "feed": {"mode": "replace", "max_zeroed_percent": 150}}]}],
    }
    problems = problems_of(raw, tmp_path)
    assert problems["colour"] == "unknown key"
    assert "ingest.workers" in problems
    assert "unknown time zone" in problems["merchants[0].timezone"]
    assert "not an email address" in problems["merchants[0].report_recipients"]
    assert "merchants[0].sources[0].feed.mode" in problems
    assert "merchants[0].sources[0].feed.max_zeroed_percent" in problems


def test_a_missing_drop_folder_is_reported_beside_type_errors_in_one_pass(tmp_path: Path) -> None:
    raw = {"ingest": {"workers": "many"},
           "merchants": [{"name": "m", "sources": [{"name": "b", "drop_folder": "nowhere", "priority": "high"}]}]}
    problems = problems_of(raw, tmp_path)
    assert "ingest.workers" in problems and "merchants[0].sources[0].priority" in problems
    assert problems["merchants[0].sources[0].drop_folder"].startswith("folder does not exist")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    raw = {"merchants": [{"name": "m", "sources": [{"name": "w"}, {"name": "w"}]}]}
    problems = problems_of(raw, tmp_path)
    assert any("used twice" in reason for reason in problems.values())


def test_a_password_can_come_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PW", "s3cret")
    s = parse_settings({"database": {"url": "postgresql+psycopg://u@h/db", "password_env": "DB_PW"}}, base=tmp_path)
    assert s.database_url == "postgresql+psycopg://u:s3cret@h/db"


def test_a_password_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("fromfile\n")
    s = parse_settings({"database": {"url": "postgresql+psycopg://u@h/db", "password_file": "pw"}}, base=tmp_path)
    assert s.database_url == "postgresql+psycopg://u:fromfile@h/db"


def test_a_secret_from_an_unset_variable_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_PW", raising=False)
    problems = problems_of({"database": {"url": "postgresql://u@h/db", "password_env": "NOPE_PW"}}, tmp_path)
    assert "NOPE_PW" in problems["database"]


def test_a_filename_as_of_needs_a_pattern_with_a_ts_group(tmp_path: Path) -> None:
    raw = {"merchants": [{"name": "m", "sources": [{"name": "w", "feed": {"as_of_from": "filename", "filename_pattern": "(\\d+)"}}]}]}
    problems = problems_of(raw, tmp_path)
    assert "(?P<ts>" in problems["merchants[0].sources[0].feed.filename_pattern"]


def test_the_config_is_found_from_option_then_environment_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCKDROP_CONFIG", raising=False)
    assert find_config(None) == tmp_path / "stockdrop.toml"
    monkeypatch.setenv("STOCKDROP_CONFIG", "/etc/x.toml")
    assert find_config(None) == Path("/etc/x.toml")
    assert find_config("given.toml") == Path("given.toml")


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stockdrop.toml"
    path.write_text("merchants = [[[")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "not valid TOML" in str(info.value)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "in").mkdir()
    path = tmp_path / "conf" / "stockdrop.toml"
    path.write_text('data_dir = "var"\n[[merchants]]\nname = "m"\n[[merchants.sources]]\nname = "w"\ndrop_folder = "in"\n')
    s = load_settings(path)
    assert s.data_dir == tmp_path / "conf" / "var"
    assert s.merchants[0].sources[0].drop_folder == tmp_path / "conf" / "in"


def test_the_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parent.parent / "config" / "stockdrop.example.toml"
    copy = tmp_path / "stockdrop.toml"
    copy.write_text(example.read_text())
    monkeypatch.setenv("AMAZON_SFTP_PASSWORD", "secret")  # the example's export password comes from here
    monkeypatch.setenv("SMTP_PASSWORD", "mail-secret")
    settings = load_settings(copy)
    assert settings.smtp is not None and settings.smtp.resolved_password() == "mail-secret"
    assert settings.smtp.resolved_port == 587
    assert settings.merchants[0].sources[0].name == "main-warehouse"
    [(_, market, export)] = settings.export_targets()
    assert (market, export.transport, export.format) == ("amazon-de", "sftp", "amazon_price_quantity")
    assert export.resolved_password() == "secret"


@pytest.mark.parametrize(("export", "says"), [
    ({"folder": "out", "format": "excel"}, "unknown format 'excel'"),
    ({"folder": "out", "file_name": "feed.csv"}, "file_name must contain {delivery}"),
    ({"folder": "out", "done_marker": "done"}, "done_marker must contain {name}"),
    ({"transport": "ftp", "folder": "/in", "host": "h", "user": "u"}, "needs a password"),
    ({"transport": "sftp", "folder": "/in", "host": "h", "user": "u", "password": "p"},
     "pin the server's host key"),
    ({"transport": "ftps", "folder": "/in", "user": "u", "password": "p"}, "needs host and user"),
])
def test_a_market_export_that_cannot_work_is_refused_at_load(tmp_path: Path, export: dict, says: str) -> None:  # type: ignore[type-arg]
    raw = {"merchants": [{"name": "m", "markets": [{"name": "amz", "export": export}]}]}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, base=tmp_path)
    [(key, message)] = info.value.problems
    assert key.startswith("merchants[0].markets[0].export") and says in message, (key, message)


def test_smtp_takes_its_password_from_a_file_and_picks_the_port_of_its_security(tmp_path: Path) -> None:
    (tmp_path / "smtp.secret").write_text("pw\n")
    s = parse_settings({"smtp": {"host": "mail.example.com", "security": "tls", "user": "u",
                                 "password_file": "smtp.secret", "from_address": "stock@example.com"}},
                       base=tmp_path)
    assert s.smtp is not None
    assert (s.smtp.resolved_port, s.smtp.resolved_password(), s.smtp.domain) == (465, "pw", "example.com")


@pytest.mark.parametrize(("smtp", "key", "says"), [
    ({"host": "h", "from_address": "a@b.io", "user": "u"}, "smtp", "user and a password"),
    ({"host": "h", "from_address": "a@b.io", "user": "u", "password": "p", "security": "none"}, "smtp",
     "never sent in the clear"),
    ({"host": "h", "from_address": "not an address"}, "smtp.from_address", "not an email address"),
    ({"host": "h", "from_address": "a@b.io", "security": "ssl"}, "smtp.security", "starttls"),
])
def test_smtp_settings_that_cannot_work_are_refused_at_load(tmp_path: Path, smtp: dict, key: str,  # type: ignore[type-arg]
                                                            says: str) -> None:
    problems = problems_of({"smtp": smtp}, tmp_path)
    assert says in problems[key]


def test_a_source_may_send_its_reports_to_recipients_of_its_own(tmp_path: Path) -> None:
    s = parse_settings({"merchants": [{"name": "m", "report_recipients": ["boss@m.com"], "sources": [
        {"name": "wh", "report_recipients": ["wh-team@3pl.com"]}, {"name": "other"}]}]}, base=tmp_path)
    merchant = s.merchants[0]
    assert [src.recipients(merchant) for src in merchant.all_sources()] == [
        ["boss@m.com"], ["wh-team@3pl.com"], ["boss@m.com"]]
    problems = problems_of({"merchants": [{"name": "m", "sources": [
        {"name": "wh", "report_recipients": ["a@b.com, evil@x.com"]}]}]}, tmp_path)
    assert "not an email address" in problems["merchants[0].sources[0].report_recipients"]


def test_the_digest_time_and_xlsx_come_from_reports_unless_the_merchant_says_otherwise(tmp_path: Path) -> None:
    s = parse_settings({"reports": {"digest_at": "06:30", "attach_xlsx": True}, "merchants": [
        {"name": "a"}, {"name": "b", "digest_at": "18:05", "attach_xlsx": False}]}, base=tmp_path)
    a, b = s.merchants
    assert (a.digest_time(s.reports), a.digest_xlsx(s.reports)) == ("06:30", True)
    assert (b.digest_time(s.reports), b.digest_xlsx(s.reports)) == ("18:05", False)
    assert parse_settings({}, base=tmp_path).reports.digest_at == "07:00"
    problems = problems_of({"reports": {"digest_at": "7am"}, "merchants": [{"name": "m", "digest_at": "25:00"}]},
                           tmp_path)
    assert "is not a time of day as HH:MM" in problems["reports.digest_at"]
    assert "is not a time of day as HH:MM" in problems["merchants[0].digest_at"]


def test_bans_take_their_old_max_failures_key_and_their_scores(tmp_path: Path) -> None:
    s = parse_settings({"listeners": {"bans": {"max_failures": 3}}}, base=tmp_path)
    assert (s.listeners.bans.threshold, s.listeners.bans.score_invalid) == (3, 2)
    problems = problems_of({"listeners": {"bans": {"threshold": 0}, "sftp": {"auth_timeout": 0}}}, tmp_path)
    assert set(problems) == {"listeners.bans.threshold", "listeners.sftp.auth_timeout"}


def test_the_parser_limits_have_their_defaults_and_bounds(tmp_path: Path) -> None:
    s = parse_settings({}, base=tmp_path)
    assert (s.ingest.max_sku_length, s.ingest.max_inflation_ratio) == (100, 100.0)
    # products.sku is a String(200): a longer SKU could not be stored.
    found = problems_of({"ingest": {"max_sku_length": 201, "max_inflation_ratio": 0.5}}, tmp_path)
    assert set(found) == {"ingest.max_sku_length", "ingest.max_inflation_ratio"}

