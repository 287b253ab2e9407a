"""The package's layout rules, read from the imports themselves (ast), so a new
import that crosses a line fails here rather than in a review.

- ``inventory/`` (the domain core) imports nothing of ``daemon`` but itself and ``errors``;
- ``db/`` imports only ``db/``, ``inventory/`` and ``errors``;
- ``formats/`` reads and writes files without a database or a daemon around it;
- ``transports/`` knows neither ingest nor export nor the database;
- ``ingest/`` and ``export/`` never import each other;
- only ``runtime/schedule.py`` may import APScheduler.

Imports under ``if TYPE_CHECKING:`` count too: a type is a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon"

# package -> the daemon packages (first component under daemon/) it may import
ALLOWED: dict[str, set[str]] = {
    "inventory": {"inventory", "errors"},
    "db": {"db", "inventory", "errors"},
    "formats": {"formats", "inventory", "errors"},
    "transports": {"transports", "auth", "errors"},
}
NEVER: dict[str, set[str]] = {
    "ingest": {"export", "cli", "reports", "web"},
    "export": {"ingest", "cli", "web"},
    "auth": {"ingest", "export", "cli"},
    "runtime": {"cli"},
}
SCHEDULER_HOME = "runtime/schedule.py"


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in ``source``, relative ones resolved."""
    found: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # ``from daemon import settings`` imports the module daemon.settings
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "daemon"]
    return found


def violations(relative: str, source: str) -> list[str]:
    """Every import of one file (path relative to daemon/) that breaks a rule."""
    parts = Path(relative).with_suffix("").parts
    module = ".".join(("daemon", *parts))
    home = parts[0] if len(parts) > 1 else None
    out: list[str] = []
    for line, name in imports(source, module):
        if name.split(".")[0] == "apscheduler" and relative != SCHEDULER_HOME:
            out.append(f"{relative}:{line} imports {name}: only {SCHEDULER_HOME} may import APScheduler")
        if not name.startswith("daemon.") or home is None:
            continue
        target = name.split(".")[1]
        if home in ALLOWED and target not in ALLOWED[home]:
            out.append(f"{relative}:{line} imports {name}: {home}/ may import only {sorted(ALLOWED[home])}")
        if target in NEVER.get(home, ()):
            out.append(f"{relative}:{line} imports {name}: {home}/ never imports {target}/")
    return out


def test_the_package_keeps_its_layout_rules() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("db/migrations/"):
            continue  # Alembic's scripts: they import the models, as they must
        found += violations(relative, path.read_text(encoding="utf-8"))
    assert found == []


@pytest.mark.parametrize(("relative", "source"), [
    # What the layout had before it had these rules: each must be caught.
    ("db/accounts.py", "from daemon.ingest.sources import SourceBook\n"),
    ("db/accounts.py", "from daemon.auth.hostkey import blob_fingerprint\n"),
    ("db/orders.py", "from daemon.formats.orders import read_orders\n"),
    ("db/markets.py", "from daemon.settings import MarketSettings\n"),
    ("db/catalog.py", "from daemon import settings\n"),
    ("runtime/assemble.py", "from daemon.cli.app import App\n"),
    ("inventory/feed.py", "from daemon.db import bulk\n"),
    ("inventory/feed.py", "if True:\n    from ..settings import IngestSettings\n"),
    ("ingest/process.py", "from daemon.export import outbox\n"),
    ("export/plan.py", "import daemon.ingest.pipeline\n"),
    ("formats/results.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from daemon.db.uploads import ErrorRow\n"),
    ("transports/sftp.py", "from daemon.settings import PullSettings\n"),
    ("ingest/pull.py", "from apscheduler.schedulers.background import BackgroundScheduler\n"),
])
def test_a_crossed_line_is_caught(relative: str, source: str) -> None:
    assert violations(relative, source), f"{relative}: {source!r} was let through"


def test_what_the_rules_allow_is_let_through() -> None:
    assert violations("db/bulk/sqlite.py", "from daemon.db.types import to_micros\nimport polars\n") == []
    assert violations("inventory/uploads.py", "from daemon.errors import FeedError\n") == []
    assert violations("ingest/apply_feed.py", "from daemon.db import bulk\nfrom daemon.formats import headers\n") == []
    assert violations(SCHEDULER_HOME, "from apscheduler.triggers.cron import CronTrigger\n") == []
