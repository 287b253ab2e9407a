"""TOML configuration -> validated, typed settings.

The file is read once at load; every problem is reported with its key path
(``merchants[0].sources[1].drop_folder: folder does not exist``) and the daemon
refuses to start rather than half-start. Relative paths are relative to the
folder of the config file, so a config and its data directory can move together.

Secrets are never required in the file itself: every secret ``X`` may be given
as ``X_env`` (the name of an environment variable) or ``X_file`` (a path).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daemon.errors import ConfigError, NotFound, UserError
from daemon.inventory.allocation import MERCHANT_FULFILLED
from daemon.reports.period import parse_at

CONFIG_ENV = "STOCKDROP_CONFIG"
DEFAULT_CONFIG_NAME = "stockdrop.toml"

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class _Model(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(value: str | None, env: str | None, file: Path | None, what: str) -> str | None:
    given = [x for x in (value, env, file) if x is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {what}, {what}_env, {what}_file")
    if env is not None:
        if env not in os.environ:
            raise ValueError(f"{what}_env: environment variable {env} is not set")
        return os.environ[env]
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{what}_file: cannot read {file}: {exc.strerror}") from None
    return value


class DatabaseSettings(_Model):
    """Where the state lives. Default: a SQLite file in the data directory."""

    url: str | None = None
    url_env: str | None = None
    url_file: Path | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_file: Path | None = None
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    pool_size: int = Field(default=5, ge=1)

    def resolved_url(self, data_dir: Path) -> str:
        url = _read_secret(self.url, self.url_env, self.url_file, "url")
        if url is None:
            return f"sqlite:///{data_dir / 'stockdrop.db'}"
        password = _read_secret(self.password, self.password_env, self.password_file, "password")
        if password is not None:
            from sqlalchemy.engine import make_url

            url = make_url(url).set(password=password).render_as_string(hide_password=False)
        return url

    @model_validator(mode="after")
    def _secrets_resolve(self) -> DatabaseSettings:
        _read_secret(self.url, self.url_env, self.url_file, "url")
        _read_secret(self.password, self.password_env, self.password_file, "password")
        return self


class FeedSettings(_Model):
    """How a source's quantity files are read and applied."""

    mode: Literal["set", "adjust"] = "set"
    scope: Literal["partial", "full"] = "partial"
    on_row_error: Literal["skip_rows", "reject_file"] = "skip_rows"
    # A feed does not invent products: an unknown SKU is a row error naming the
    # catalogue SKU it may be a mangled form of; "create" is for a source that
    # owns the catalogue.
    unknown_sku: Literal["reject_row", "create"] = "reject_row"
    duplicates: Literal["reject", "last_wins"] = "reject"
    negative: Literal["reject", "clamp"] = "reject"
    max_quantity: int = Field(default=1_000_000, ge=0)
    # Full-feed guard: hold instead of applying a suspiciously small feed.
    min_rows: int = Field(default=1, ge=0)
    max_zeroed_percent: float = Field(default=20.0, ge=0, le=100)
    columns: dict[Literal["sku", "quantity", "location", "as_of"], str] = Field(default_factory=dict)
    # Location values in files -> source names of this merchant (case-insensitive).
    # A location equal to a source's name needs no entry.
    location_map: dict[str, str] = Field(default_factory=dict)
    sheet: str | int | None = None
    # Where a row's as-of time comes from. "filename" uses filename_pattern.
    as_of_from: Literal["column", "filename", "received"] = "received"
    filename_pattern: str | None = None
    filename_time_format: str = "%Y%m%d%H%M%S"

    @field_validator("filename_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
            if "ts" not in compiled.groupindex:
                raise ValueError("needs a named group (?P<ts>...) holding the timestamp")
        return value

    @model_validator(mode="after")
    def _filename_needs_pattern(self) -> FeedSettings:
        if self.as_of_from == "filename" and not self.filename_pattern:
            raise ValueError("as_of_from = 'filename' needs filename_pattern")
        return self


def _check_ssh_login(password: str | None, key_file: Path | None, known_hosts: Path | None,
                     fingerprint: str | None) -> None:
    """An SFTP client's login and host-key pin (pulls and exports alike)."""
    if password is None and key_file is None:
        raise ValueError("give a password (password, password_env or password_file) or key_file")
    if known_hosts is None and fingerprint is None:
        raise ValueError("pin the server's host key with known_hosts or host_key_fingerprint")
    if fingerprint and not fingerprint.startswith("SHA256:"):
        raise ValueError("host_key_fingerprint must look like SHA256:... (ssh-keygen -lf)")


class PullSettings(_Model):
    """Poll a remote SFTP folder (the warehouse's server) for this source's feeds."""

    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_file: Path | None = None
    key_file: Path | None = None  # a private key (OpenSSH format)
    key_passphrase_env: str | None = None
    remote_folder: str = "/"
    poll_seconds: float = Field(default=60.0, gt=0)
    # The server's host key is pinned: an unknown or changed key refuses the connection.
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None  # "SHA256:..." as ssh-keygen -lf prints it
    after: Literal["delete", "move"] = "delete"
    processed_folder: str = "processed"  # with after = "move", relative to remote_folder
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _auth_and_pin(self) -> PullSettings:
        password = _read_secret(self.password, self.password_env, self.password_file, "password")
        _check_ssh_login(password, self.key_file, self.known_hosts, self.host_key_fingerprint)
        return self

    def resolved_password(self) -> str | None:
        return _read_secret(self.password, self.password_env, self.password_file, "password")


_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def _check_emails(value: list[str] | None) -> list[str] | None:
    """Bare addresses only: a name part or a comma would let one entry become several recipients."""
    for address in value or []:
        if not _EMAIL.fullmatch(address):
            raise ValueError(f"not an email address: {address!r}")
    return value


EXPORT_FORMATS = ("csv", "amazon_price_quantity", "amazon_inventory_loader", "ebay_revise", "walmart_json",
                  "shopify_inventory")
ORDER_EXPORT_FORMATS = ("csv",)


class DeliverySettings(_Model):
    """Where files are delivered and how a failed delivery is retried: the part every export shares.

    ``transport = "dir"`` writes into a local ``folder`` (a tool of the
    merchant's uploads it from there); ``ftp``, ``ftps`` and ``sftp`` deliver
    to ``folder`` on the other side's server. A market's quantity feed
    (``ExportSettings``) and a warehouse's order file (``OrdersExportSettings``)
    go out the same way.
    """

    transport: Literal["dir", "ftp", "ftps", "sftp"] = "dir"
    folder: str
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_file: Path | None = None
    key_file: Path | None = None  # sftp: a private key (OpenSSH format)
    key_passphrase_env: str | None = None
    known_hosts: Path | None = None  # sftp: the server's host key is pinned, never learned
    host_key_fingerprint: str | None = None  # "SHA256:..." as ssh-keygen -lf prints it
    # ftps: the server's certificate is checked against the system's CAs, or only these (a PEM file).
    ca_file: Path | None = None
    done_marker: str | None = None  # e.g. "{name}.done": written after the file
    failing_after: int = Field(default=5, ge=1)  # failed tries before the delivery is marked failing
    retry_max_seconds: float = Field(default=300.0, gt=0)  # the backoff's cap
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _transport_needs(self) -> DeliverySettings:
        if self.done_marker is not None and "{name}" not in self.done_marker:
            raise ValueError("done_marker must contain {name} (the delivered file's name)")
        if self.transport == "dir":
            return self
        if self.host is None or self.user is None:
            raise ValueError(f"transport {self.transport!r} needs host and user")
        password = _read_secret(self.password, self.password_env, self.password_file, "password")
        if self.transport == "sftp":
            _check_ssh_login(password, self.key_file, self.known_hosts, self.host_key_fingerprint)
        elif password is None:
            raise ValueError(f"transport {self.transport!r} needs a password (password, password_env or "
                             f"password_file)")
        return self

    def resolved_password(self) -> str | None:
        return _read_secret(self.password, self.password_env, self.password_file, "password")


def _check_crons(settings: BaseModel, *keys: str) -> None:
    for key in keys:
        expression = getattr(settings, key)
        if expression is not None:
            from daemon.runtime.schedule import check_cron  # APScheduler, only when a cron is given

            problem = check_cron(expression)
            if problem:
                raise ValueError(f"{key}: {problem}")


class ExportSettings(DeliverySettings):
    """Where and how a market is sent its quantities (``[merchants.markets.export]``).

    A delta (the listings whose quantity moved since the last delivery) goes
    ``debounce_seconds`` after a change, and at least every
    ``delta_every_seconds``; a full feed (every listing) every
    ``full_every_seconds``, and on demand (``stockdrop export --full``).
    """

    format: str = "csv"
    # Format options (csv: columns, delimiter, escape_formulas; ebay_revise:
    # site_id, country, currency, spelling; shopify_inventory: location),
    # passed to the writer as text.
    options: dict[str, str] = Field(default_factory=dict)
    # {market}, {kind} (delta or full), {timestamp} (UTC, 20261202T051500Z),
    # {delivery} (the outbox number: unique per delivery) and {ext}.
    file_name: str = "{market}-{kind}-{timestamp}-{delivery}.{ext}"
    debounce_seconds: float = Field(default=5.0, ge=0)
    delta_every_seconds: float | None = Field(default=900.0, gt=0)
    full_every_seconds: float | None = Field(default=86400.0, gt=0)
    # Or at set times, as a crontab line in UTC ("0 6 * * *": a full feed at 06:00).
    delta_cron: str | None = None
    full_cron: str | None = None

    @model_validator(mode="after")
    def _feed_needs(self) -> ExportSettings:
        if self.format not in EXPORT_FORMATS:
            raise ValueError(f"format: unknown format {self.format!r} (known: {', '.join(EXPORT_FORMATS)})")
        if "{delivery}" not in self.file_name:
            raise ValueError("file_name must contain {delivery}: every delivery needs a name of its own")
        _check_crons(self, "delta_cron", "full_cron")
        return self


class OrdersExportSettings(DeliverySettings):
    """Order files to a warehouse (``[merchants.sources.orders_export]``).

    Every run sends the warehouse each open order line allocated to it that
    its status files have not confirmed yet, so a lost file costs nothing; a
    line sent ``1 + resend_limit`` times without an answer is flagged
    ``unconfirmed`` and not sent again. Runs every ``every_seconds`` and/or
    at ``cron``, and on demand (``stockdrop orders export SOURCE``).
    """

    format: str = "csv"
    # csv: columns (of order_id, line_id, market, sku, quantity, ordered_at), delimiter, escape_formulas.
    options: dict[str, str] = Field(default_factory=dict)
    # {source}, {timestamp} (UTC), {delivery} (the outbox number: unique per delivery) and {ext}.
    file_name: str = "{source}-orders-{timestamp}-{delivery}.{ext}"
    every_seconds: float | None = Field(default=900.0, gt=0)
    cron: str | None = None  # a crontab line in UTC
    resend_limit: int = Field(default=5, ge=0)  # runs after the first that send an unconfirmed line again
    # A line ordered longer ago than this is never sent for the first time:
    # turning the export on does not ship a year of old orders again.
    max_age_days: int = Field(default=14, ge=0)

    @model_validator(mode="after")
    def _orders_need(self) -> OrdersExportSettings:
        if self.format not in ORDER_EXPORT_FORMATS:
            raise ValueError(f"format: unknown order file format {self.format!r} "
                             f"(known: {', '.join(ORDER_EXPORT_FORMATS)})")
        if "{delivery}" not in self.file_name:
            raise ValueError("file_name must contain {delivery}: every delivery needs a name of its own")
        if self.every_seconds is None and self.cron is None:
            raise ValueError("give every_seconds or cron (or both): when should the warehouse get its orders?")
        _check_crons(self, "cron")
        return self


class SourceSettings(_Model):
    name: Name
    kind: Literal["warehouse", "merchant-fulfilled"] = "warehouse"
    # Who gets this source's alerts and digest section instead of the merchant's
    # report_recipients (the warehouse's own team, say). None: the merchant's.
    report_recipients: list[str] | None = None
    # The inbox. Default: <data_dir>/sources/<merchant>/<source>/inbox
    drop_folder: Path | None = None
    # Allocation order for orders: lower first. merchant-fulfilled defaults to 0.
    priority: int = 100
    feed: FeedSettings = Field(default_factory=FeedSettings)
    pull: PullSettings | None = None
    # A warehouse's open order lines are sent to it as files; its status files come back.
    orders_export: OrdersExportSettings | None = None

    @model_validator(mode="after")
    def _orders_go_to_warehouses(self) -> SourceSettings:
        if self.orders_export is not None and self.kind != "warehouse":
            raise ValueError("orders_export: only a warehouse source is sent order files")
        return self

    @field_validator("report_recipients")
    @classmethod
    def _emails(cls, value: list[str] | None) -> list[str] | None:
        return _check_emails(value)

    def recipients(self, merchant: MerchantSettings) -> list[str]:
        return list(self.report_recipients if self.report_recipients is not None else merchant.report_recipients)


class MarketSettings(_Model):
    """A marketplace the merchant sells on: which sources feed it, and its channel rules."""

    name: Name
    kind: Literal["amazon", "ebay", "walmart", "shopify", "generic"] = "generic"
    sources: list[str] | None = None
    buffer: int = Field(default=0, ge=0)
    percent: int = Field(default=100, ge=0, le=100)
    maximum: int | None = Field(default=None, ge=0)
    minimum: int = Field(default=0, ge=0)
    restock: Literal["always", "never", "by_origin"] = "by_origin"
    export: ExportSettings | None = None


class MerchantSettings(_Model):
    name: Name
    timezone: str = "UTC"
    report_recipients: list[str] = Field(default_factory=list)
    # The digest's time of day in this merchant's time zone, and whether it
    # attaches the rejected rows as XLSX too; None: the [reports] value.
    digest_at: str | None = None
    attach_xlsx: bool | None = None
    sources: list[SourceSettings] = Field(default_factory=list)
    markets: list[MarketSettings] = Field(default_factory=list)
    restock_window_days: int = Field(default=14, ge=0)
    split_orders: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("report_recipients")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        _check_emails(value)
        return value

    @field_validator("digest_at")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            parse_at(value)
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> MerchantSettings:
        _no_duplicates([s.name for s in self.sources], "source")
        _no_duplicates([m.name for m in self.markets], "market")
        if sum(1 for s in self.sources if s.kind == MERCHANT_FULFILLED) > 1:
            raise ValueError("only one source may be merchant-fulfilled")
        names = {s.name.lower() for s in self.all_sources()}
        for source in self.sources:
            for location, target in source.feed.location_map.items():
                if target.lower() not in names:
                    raise ValueError(f"sources[{source.name}].feed.location_map: {location!r} maps to "
                                     f"{target!r}, which is not a source of this merchant")
        return self

    def digest_time(self, reports: ReportSettings) -> str:
        return self.digest_at or reports.digest_at

    def digest_xlsx(self, reports: ReportSettings) -> bool:
        return reports.attach_xlsx if self.attach_xlsx is None else self.attach_xlsx

    def all_sources(self) -> list[SourceSettings]:
        """The configured sources plus the default merchant-fulfilled one."""
        if any(s.kind == MERCHANT_FULFILLED for s in self.sources):
            return list(self.sources)
        default = SourceSettings(name=MERCHANT_FULFILLED, kind="merchant-fulfilled", priority=0)
        return [default, *self.sources]


def market_settings(**values: Any) -> MarketSettings:
    """A market from ``market add``'s options, checked as a config's is (a ``UserError`` if not)."""
    try:
        return MarketSettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "market"
        raise UserError(f"{where}: {_message(first)}") from None


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} name {name!r} is used twice")
        seen.add(name)


class IngestSettings(_Model):
    workers: int = Field(default=4, ge=1, le=64)
    settle_seconds: float = Field(default=2.0, ge=0)
    reconcile_seconds: float = Field(default=60.0, gt=0)
    polling_observer: bool = False  # for network filesystems where inotify sees nothing
    done_markers: bool = False  # wait for NAME.done / NAME.ok before taking NAME
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_uncompressed_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # A sheet of data inflates 5-20 times; 500 MB of whitespace in a 500 KB
    # file is 1,000 times. Not applied below 16 MB inflated (archive.RATIO_FLOOR).
    max_inflation_ratio: float = Field(default=100.0, ge=1)
    # Amazon takes 40 characters, eBay 80 and Shopify 255; 100 leaves room
    # for every market's SKU while a 10,000-character "SKU" is refused. At
    # most 200: products.sku is a String(200).
    max_sku_length: int = Field(default=100, ge=1, le=200)
    parse_timeout_seconds: float = Field(default=300.0, gt=0)
    parse_memory_mb: int = Field(default=4096, ge=256)
    archive_retention_days: int = Field(default=90, ge=0)


class FtpListener(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=2121, ge=0, le=65535)
    passive_ports: tuple[int, int] | None = None
    masquerade_address: str | None = None
    max_connections: int = Field(default=50, ge=1)
    max_per_ip: int = Field(default=10, ge=1)
    max_unauthenticated: int = Field(default=20, ge=1)  # connected, not logged in yet
    max_unauthenticated_per_ip: int = Field(default=5, ge=1)
    auth_timeout: int = Field(default=30, ge=1)  # FTP: room for a few 3 s failed-login pauses
    idle_timeout: int = Field(default=300, ge=1)
    max_file_bytes: int | None = Field(default=None, gt=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> FtpListener:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.require_tls and self.tls_cert is None:
            raise ValueError("require_tls needs tls_cert and tls_key")
        if self.passive_ports and self.passive_ports[0] > self.passive_ports[1]:
            raise ValueError("passive_ports: first port is above the last")
        return self


class SftpListener(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=2222, ge=0, le=65535)
    host_key: Path | None = None  # default: <data_dir>/ssh_host_ed25519_key
    idle_timeout: int = Field(default=300, ge=1)
    max_connections: int = Field(default=50, ge=1)
    max_per_ip: int = Field(default=10, ge=1)
    max_unauthenticated: int = Field(default=20, ge=1)  # connected, not logged in yet
    max_unauthenticated_per_ip: int = Field(default=5, ge=1)
    auth_timeout: int = Field(default=10, ge=1)
    max_file_bytes: int | None = Field(default=None, gt=0)


class BanSettings(_Model):
    """Scored as SFTPGo's defender (``daemon.auth.bans``): an address is banned for
    ``ban_seconds`` once its points within ``window_seconds`` reach ``threshold``."""

    # max_failures: this key's name before the scores
    threshold: int = Field(default=5, ge=1, validation_alias=AliasChoices("threshold", "max_failures"))
    score_valid: int = Field(default=1, ge=0)  # a wrong password for an account that exists
    score_invalid: int = Field(default=2, ge=0)  # a login as an account that does not exist
    score_limit_exceeded: int = Field(default=3, ge=0)  # a connection over a per-address limit
    window_seconds: int = Field(default=300, ge=1)
    ban_seconds: int = Field(default=900, ge=0)
    ban_growth_percent: float = Field(default=50.0, ge=0)  # each repeat ban lasts this much longer
    max_ban_seconds: int = Field(default=86_400, ge=0)
    remember_seconds: int = Field(default=86_400, ge=0)  # how long an ended ban counts for the next
    refresh_seconds: float = Field(default=5.0, gt=0)  # how soon a ban by another daemon is honoured


class ListenerSettings(_Model):
    ftp: FtpListener = Field(default_factory=FtpListener)
    sftp: SftpListener = Field(default_factory=SftpListener)
    bans: BanSettings = Field(default_factory=BanSettings)


class SmtpSettings(_Model):
    """The mail server alerts and digests go through (``[smtp]``).

    ``security``: ``starttls`` (port 587 by default) upgrades a plain
    connection and refuses a server that does not offer STARTTLS; ``tls`` is
    TLS from the first byte (port 465); ``none`` sends in the clear (port 25,
    a relay on the same box). The server's certificate is checked against the
    system's CAs, or only those in ``ca_file``.
    """

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    from_address: str
    # The right-hand side of every Message-ID. Default: the from address's domain.
    message_id_domain: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    tries: int = Field(default=4, ge=1)  # per pass of the outbox, with backoff between them
    retry_max_seconds: float = Field(default=60.0, gt=0)  # the backoff's cap
    poll_seconds: float = Field(default=5.0, gt=0)  # how often the leader looks at the outbox

    @field_validator("from_address")
    @classmethod
    def _from_is_an_address(cls, value: str) -> str:
        _check_emails([value])
        return value

    @model_validator(mode="after")
    def _login(self) -> SmtpSettings:
        password = _read_secret(self.password, self.password_env, self.password_file, "password")
        if (self.user is None) != (password is None):
            raise ValueError("user and a password (password, password_env or password_file) go together")
        if password is not None and self.security == "none":
            raise ValueError("a password is never sent in the clear: use security = 'starttls' or 'tls'")
        return self

    @property
    def resolved_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.from_address.rsplit("@", 1)[1]

    def resolved_password(self) -> str | None:
        return _read_secret(self.password, self.password_env, self.password_file, "password")


class AlertSettings(_Model):
    """Mail sent at once when a file is rejected or held, or a market's exports keep failing."""

    enabled: bool = True
    # Alerts of the same cause (one source, one kind of reason) within this
    # window are one mail; the next mail after it counts the ones held back.
    coalesce_seconds: float = Field(default=900.0, ge=0)


class ReportSettings(_Model):
    """The upload-history digest mailed to each merchant (``[reports]``); it needs ``[smtp]``."""

    digest: bool = True  # false: no digest is written on a schedule (``report send`` still works)
    # Daily, at this time of day in each merchant's time zone (a merchant's
    # own ``digest_at`` replaces it). Each digest covers everything since the last.
    digest_at: str = "07:00"
    attach_xlsx: bool = False  # the rejected rows as XLSX beside the CSV
    # At most this many rejected rows are attached; the digest says how many more.
    max_attached_rows: int = Field(default=10_000, ge=1)
    check_seconds: float = Field(default=60.0, gt=0)  # how often the leader looks whether a digest is due

    @field_validator("digest_at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        parse_at(value)
        return value


class Settings(_Model):
    config_path: Path | None = None
    data_dir: Path = Path("data")
    # The name this daemon records on the uploads it holds; several daemons on
    # one database recover only their own. Default: the host and data_dir.
    node_id: Name | None = None
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    listeners: ListenerSettings = Field(default_factory=ListenerSettings)
    merchants: list[MerchantSettings] = Field(default_factory=list)
    smtp: SmtpSettings | None = None  # no [smtp]: no mail is written or sent
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)

    @model_validator(mode="after")
    def _unique_merchants(self) -> Settings:
        _no_duplicates([m.name for m in self.merchants], "merchant")
        return self

    @property
    def database_url(self) -> str:
        return self.database.resolved_url(self.data_dir)

    @property
    def node(self) -> str:
        """``node_id``, or one stable per box and data_dir: ``<host>-<8 hex of the data_dir>``."""
        if self.node_id:
            return self.node_id
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        return f"{socket.gethostname()[:80]}-{digest}"

    def merchant(self, name: str | None) -> MerchantSettings:
        if name is None:
            if len(self.merchants) == 1:
                return self.merchants[0]
            raise NotFound("several merchants are configured: name one with --merchant")
        for merchant in self.merchants:
            if merchant.name == name:
                return merchant
        raise NotFound(f"no merchant named {name!r} in the configuration")

    def export_targets(self) -> list[tuple[str, str, ExportSettings]]:
        """(merchant, market, export settings) of every market with an ``[export]``."""
        return [(m.name, market.name, market.export) for m in self.merchants for market in m.markets
                if market.export is not None]

    def orders_export_targets(self) -> list[tuple[str, str, OrdersExportSettings]]:
        """(merchant, source, order export settings) of every warehouse with an ``[orders_export]``."""
        return [(m.name, s.name, s.orders_export) for m in self.merchants for s in m.sources
                if s.orders_export is not None]

    def source_folder(self, merchant: str, source: SourceSettings) -> Path:
        """The folder that holds a source's inbox/ and results/."""
        if source.drop_folder is not None:
            return source.drop_folder.parent
        return self.data_dir / "sources" / merchant / source.name

    def inbox(self, merchant: str, source: SourceSettings) -> Path:
        if source.drop_folder is not None:
            return source.drop_folder
        return self.source_folder(merchant, source) / "inbox"

    def results(self, merchant: str, source: SourceSettings) -> Path:
        return self.source_folder(merchant, source) / "results"

    def statuses_folder(self, merchant: str, source: SourceSettings) -> Path:
        """Where a warehouse's status files arrive: ``statuses/{inbox,results}`` in its folder,
        laid out like a market's ``orders/`` (a login of its own is jailed to it)."""
        return self.source_folder(merchant, source) / "statuses"


_SESSION_KEY = "stockdrop.settings"


def session_info(settings: Settings) -> dict[str, Any]:
    """What the daemon's and the CLI's sessions carry in ``Session.info``
    (``db.engine.session_factory(engine, info=...)``): code handed only a
    session, such as the digest's quick-fix file, finds the settings there."""
    return {_SESSION_KEY: settings}


def settings_of(info: Mapping[str, Any]) -> Settings | None:
    """The settings a session was made with (``session_info``), if any."""
    found = info.get(_SESSION_KEY)
    return found if isinstance(found, Settings) else None


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """``-c/--config``, then ``$STOCKDROP_CONFIG``, then ``./stockdrop.toml``."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return Path.cwd() / DEFAULT_CONFIG_NAME


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue  # pydantic's internal validator names
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(error.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _absolutise(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths relative to the config file's folder, in place."""

    def fix(mapping: dict[str, Any], keys: tuple[str, ...]) -> None:
        for key in keys:
            value = mapping.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                mapping[key] = str(base / value)

    fix(raw, ("data_dir",))
    raw.setdefault("data_dir", str(base / "data"))
    if isinstance(raw.get("database"), dict):
        fix(raw["database"], ("url_file", "password_file"))
    if isinstance(raw.get("smtp"), dict):
        fix(raw["smtp"], ("password_file", "ca_file"))
    listeners = raw.get("listeners")
    if isinstance(listeners, dict):
        if isinstance(listeners.get("ftp"), dict):
            fix(listeners["ftp"], ("tls_cert", "tls_key"))
        if isinstance(listeners.get("sftp"), dict):
            fix(listeners["sftp"], ("host_key",))
    for merchant in raw.get("merchants") or []:
        if isinstance(merchant, dict):
            for source in merchant.get("sources") or []:
                if isinstance(source, dict):
                    fix(source, ("drop_folder",))
                    if isinstance(source.get("pull"), dict):
                        fix(source["pull"], ("password_file", "key_file", "known_hosts"))
                    _fix_delivery(source.get("orders_export"), fix)
            for market in merchant.get("markets") or []:
                _fix_delivery(market.get("export") if isinstance(market, dict) else None, fix)


def _fix_delivery(delivery: object, fix: Callable[[dict[str, Any], tuple[str, ...]], None]) -> None:
    """A delivery's paths (an ``[export]`` or ``[orders_export]`` table), in place."""
    if isinstance(delivery, dict):
        fix(delivery, ("password_file", "key_file", "known_hosts", "ca_file"))
        if delivery.get("transport", "dir") == "dir":
            fix(delivery, ("folder",))


def _file_checks(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Checks that need the filesystem, on the raw mapping (paths already absolute).

    They read the raw values rather than the validated settings, so a config
    with type errors still hears about a missing folder in the same pass.
    A value of the wrong type is left to the validation's own message.
    """
    problems: list[tuple[str, str]] = []
    merchants = raw.get("merchants")
    for i, merchant in enumerate(merchants if isinstance(merchants, list) else []):
        sources = merchant.get("sources") if isinstance(merchant, dict) else None
        for j, source in enumerate(sources if isinstance(sources, list) else []):
            folder = source.get("drop_folder") if isinstance(source, dict) else None
            if isinstance(folder, str) and folder and not Path(folder).is_dir():
                problems.append((f"merchants[{i}].sources[{j}].drop_folder", f"folder does not exist: {folder}"))
    listeners = raw.get("listeners")
    ftp = listeners.get("ftp") if isinstance(listeners, dict) else None
    if isinstance(ftp, dict) and ftp.get("enabled") is True:
        for key in ("tls_cert", "tls_key"):
            path = ftp.get(key)
            if isinstance(path, str) and path and not Path(path).is_file():
                problems.append((f"listeners.ftp.{key}", f"file does not exist: {path}"))
    data_dir = raw.get("data_dir")
    if isinstance(data_dir, str) and Path(data_dir).exists() and not Path(data_dir).is_dir():
        problems.append(("data_dir", f"not a folder: {data_dir}"))
    return problems


def parse_settings(raw: dict[str, Any], *, base: Path, config_path: Path | None = None) -> Settings:
    """Validate an already-read TOML mapping. Raises ConfigError with every problem, in one pass."""
    raw = dict(raw)
    _absolutise(raw, base)
    if config_path is not None:
        raw["config_path"] = str(config_path)
    problems = _file_checks(raw)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        shape = [(_key_path(tuple(e["loc"])), _message(e)) for e in exc.errors()]
        said = {key for key, _ in shape}
        raise ConfigError(shape + [p for p in problems if p[0] not in said]) from None
    if problems:
        raise ConfigError(problems)
    return settings


def load_settings(explicit: str | os.PathLike[str] | None = None) -> Settings:
    path = find_config(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("(file)", f"config file not found: {path}")]) from None
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(file)", f"{path} is not valid TOML: {exc}")]) from None
    return parse_settings(raw, base=path.resolve().parent, config_path=path.resolve())
