"""Accounts for the hosted FTP/SFTP endpoints: user add|passwd|remove|list|add-key, sftp host-key."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import click

from daemon.auth.accounts import public_key_blob
from daemon.auth.hostkey import blob_fingerprint
from daemon.auth.passwords import hash_password
from daemon.cli.app import App, emit_json, fmt_time, table
from daemon.db import accounts
from daemon.db.catalog import get_source
from daemon.errors import UserError


def _password(stdin: bool, generate: bool) -> tuple[str, bool]:
    if stdin == generate:
        raise UserError("choose one of --password-stdin or --generate")
    if generate:
        return secrets.token_urlsafe(18), True
    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise UserError("the password read from stdin is shorter than 8 characters")
    return password, False


@click.group()
def user() -> None:
    """Logins for the FTP and SFTP endpoints, each jailed to one source's folder."""


@user.command("add")
@click.argument("source", required=False)
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--market", help="An account for this market's order files instead of a source.")
@click.option("--kind", type=click.Choice(["orders", "cancellations", "statuses"]),
              help="With --market: which of its folders (default orders). With a SOURCE: statuses, its "
                   "status-file folder (a warehouse with [orders_export]), instead of its feeds.")
@click.option("--username", help="Default: MERCHANT-SOURCE (or MERCHANT-SOURCE-statuses, MERCHANT-MARKET-KIND).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--generate", is_flag=True, help="Generate a password and print it once.")
@click.pass_obj
def user_add(app: App, source: str | None, merchant: str | None, market: str | None, kind: str | None,
             username: str | None, password_stdin: bool, generate: bool) -> None:
    """Add an account for SOURCE (its feeds, or its status files with --kind statuses), or for a
    market's orders or cancellations with --market."""
    if (source is None) == (market is None):
        raise UserError("name a SOURCE, or a market with --market")
    if market is not None and kind == "statuses":
        raise UserError("--kind statuses is a warehouse's folder: name the SOURCE instead of --market")
    if source is not None and kind in ("orders", "cancellations"):
        raise UserError(f"--kind {kind} is a market's folder: use --market")
    password, generated = _password(password_stdin, generate)
    hashed = hash_password(password)
    merchant_name = app.settings.merchant(merchant).name
    with app.transaction() as session:
        if market is not None:
            from daemon.db.markets import get_market, sync_markets

            sync_markets(session, app.settings, app.now())
            kind = kind or "orders"
            name = username or f"{merchant_name}-{market}-{kind}"
            accounts.add_account(session, None, name, hashed, app.now(),
                                 market=get_market(session, merchant_name, market), kind=kind)
            where = f"{merchant_name}/market:{market}/{kind}"
        else:
            assert source is not None
            if kind == "statuses":
                configured = next((s for s in app.settings.merchant(merchant).sources if s.name == source), None)
                if configured is None or configured.orders_export is None:
                    raise UserError(f"source {source!r} has no [merchants.sources.orders_export]: it is sent no "
                                    "orders, so it sends no status files")
            suffix = "-statuses" if kind == "statuses" else ""
            name = username or f"{merchant_name}-{source}{suffix}"
            accounts.add_account(session, get_source(session, merchant_name, source), name, hashed,
                                 app.now(), kind=kind or "feed")
            where = f"{merchant_name}/{source}" + ("/statuses" if kind == "statuses" else "")
    click.echo(f"added {name} for {where}")
    if generated:
        click.echo(f"password: {password}")


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True)
@click.option("--generate", is_flag=True)
@click.pass_obj
def user_passwd(app: App, username: str, password_stdin: bool, generate: bool) -> None:
    """Set a new password for USERNAME."""
    password, generated = _password(password_stdin, generate)
    hashed = hash_password(password)
    with app.transaction() as session:
        accounts.set_password_hash(session, username, hashed)
    click.echo(f"password of {username} changed")
    if generated:
        click.echo(f"password: {password}")


@user.command("remove")
@click.argument("username")
@click.pass_obj
def user_remove(app: App, username: str) -> None:
    """Remove USERNAME (its keys too). Its uploads stay in the history."""
    with app.transaction() as session:
        accounts.remove_account(session, username)
    click.echo(f"removed {username}")


@user.command("list")
@click.option("--merchant", help="Only this merchant.")
@click.option("--json", "as_json", is_flag=True,
              help='{"users": [{username, merchant, source, has_password, keys, created_at}]}')
@click.pass_obj
def user_list(app: App, merchant: str | None, as_json: bool) -> None:
    """The accounts and the source each is jailed to."""
    with app.transaction() as session:
        rows = accounts.list_accounts(session, merchant)
    if as_json:
        emit_json({"users": rows})
        return
    table([[r.username, f"{r.merchant}/{r.source}", "yes" if r.has_password else "no", str(len(r.keys)),
            fmt_time(r.created_at)] for r in rows], ["USER", "SOURCE", "PASSWORD", "KEYS", "CREATED (UTC)"])


@user.command("add-key")
@click.argument("source")
@click.argument("pubkeyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--merchant", help="Needed when several merchants are configured.")
@click.option("--username", help="Needed when SOURCE has several accounts.")
@click.pass_obj
def user_add_key(app: App, source: str, pubkeyfile: Path, merchant: str | None, username: str | None) -> None:
    """Let an SSH public key log in to SOURCE's account over SFTP.

    With no account yet, a key-only account MERCHANT-SOURCE is made.
    """
    merchant_name = app.settings.merchant(merchant).name
    line = pubkeyfile.read_text(encoding="utf-8").strip().splitlines()[0] if pubkeyfile.stat().st_size else ""
    try:
        key_type, blob = public_key_blob(line)
    except ValueError as exc:  # binascii.Error is one too
        raise UserError(f"not an OpenSSH public key: {exc}") from None
    parts = line.split(None, 2)
    comment = parts[2] if len(parts) > 2 else None
    fp = blob_fingerprint(blob)
    with app.transaction() as session:
        src = get_source(session, merchant_name, source)
        if username is None:
            names = accounts.usernames_for_source(session, src.id)
            if len(names) > 1:
                raise UserError(f"{merchant_name}/{source} has several accounts ({', '.join(names)}): "
                                "name one with --username")
            username = names[0] if names else f"{merchant_name}-{source}"
            if not names:
                accounts.add_account(session, src, username, None, app.now())
        accounts.add_key(session, username, key_type, blob, comment, fp, app.now())
    click.echo(f"key {fp} added to {username}")


@click.group()
def sftp() -> None:
    """The hosted SFTP endpoint."""


@sftp.command("host-key")
@click.pass_obj
def sftp_host_key(app: App) -> None:
    """Print the SFTP host key's fingerprint (the key is made on first use)."""
    from daemon.auth.hostkey import fingerprint, load_or_create_host_key  # paramiko: only here

    path = app.settings.listeners.sftp.host_key or app.settings.data_dir / "ssh_host_ed25519_key"
    key = load_or_create_host_key(path)
    click.echo(f"{key.get_bits()} {fingerprint(key)} {path} (ED25519)")
