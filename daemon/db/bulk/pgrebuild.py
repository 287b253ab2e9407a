"""A big first load on PostgreSQL: the tables' indexes built once at the end, not kept up row by row.

A first load into an empty store (a new install, a merchant's onboarding)
spends most of its time in index upkeep: a million new products are a
million inserts into each b-tree of products, stock and the ledger (a
descent, a page lock and a WAL record each), and a nextval per product and
per ledger row. Building an index from the finished heap is one sort.
PostgreSQL's own advice for populating a database is this: drop the
indexes, COPY, create them again (the manual's "Populating a Database").

Measured on this 2-core box, one million rows, server time of the three
COPYs: 13.8-15.3 s with every index kept up; 7.7 s with the indexes dropped,
the ids given and the indexes built again (products' primary key kept);
about 6 s with that key dropped too (it alone cost 2 s of upkeep). In
``python -m bench ingest --only-pg`` the whole apply went from 1.49x
pgloader to 0.6-0.85x.

Taken only where it pays and blocks little:

- the load creates at least ``MIN_ROWS`` products, and the products table
  holds fewer than half as many rows as the load brings (a nearly empty
  store: few readers to block, and building the index over the rows already
  there costs less than keeping it up for the new ones);
- it takes ACCESS EXCLUSIVE on products, stock and ledger (and on each small
  table with a foreign key into them), held until the apply commits: every
  other reader and writer of them (another source's apply, an export,
  another daemon) waits for this load, seconds for a million rows. If
  anything holds them now it waits at most ``LOCK_WAIT``, then the load runs
  the incremental way: a busy store never queues behind this lock for long.

Under that lock no other transaction can take an id from products' or the
ledger's sequence (each nextval of either is an INSERT's default, or
``postgres._reserve``, which takes the table's ROW EXCLUSIVE lock first), so
each range is taken with one setval, and the ledger's ids stay in commit
order as ``market_lines`` needs.

Of each of the three tables that holds fewer than half the rows the load
brings, every index is dropped and made again from its own definition in
the catalogue (a migration that changes one needs nothing here). An index a
foreign key needs (products' primary key, for listings and order lines)
goes only with those keys, where every referencing table is small as well;
the keys are made again after it, which checks their rows again. It all
runs in a savepoint of the apply's transaction, and DDL is transactional in
PostgreSQL: a crash or an error anywhere leaves the indexes as they were. A
SKU another source created between the plan's read and the lock fails the
unique key's build; the savepoint is rolled back and the incremental path,
which keeps that product, runs instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy.orm import Session

from daemon.db.engine import driver_connection as dbapi

MIN_ROWS = 100_000
LOCK_WAIT = "500ms"
TABLES = ("products", "stock", "ledger")
# What makes the rebuild give way to the incremental path: the lock was not
# granted in time, a deadlock, a SKU created meanwhile (the unique key).
_GIVE_WAY = {"55P03", "40P01", "23505"}


@dataclass(frozen=True)
class Ids:
    """The ranges of ids this load owns: each starts at its first id and rises by its sequence's step."""

    products: int
    ledger: int
    product_step: int
    ledger_step: int


# The COPY of the three tables, given the reserved ids (``postgres.copy_new``).
Copier = Callable[[Ids], pl.DataFrame]


def first_load(session: Session, rows: int, ledger_rows: int, copy: Copier) -> pl.DataFrame | None:
    """Create ``rows`` new products (``ledger_rows`` of them with a ledger row) with indexes rebuilt.

    ``copy`` writes the rows given the ids. Returns what it returned, or None
    with nothing written where this way does not apply or gave way.
    """
    half = rows // 2
    if rows < MIN_ROWS or not _fewer_than(session, "products", half):
        return None
    # A referencing table is locked (for its foreign key to go with the key
    # it needs) only if it is small too: a big one keeps products' key, and
    # an export reading it must not make the whole rebuild give way.
    tables = [*TABLES, *(t for t in _referencing(session) if _fewer_than(session, t, half))]
    try:
        with session.begin_nested():
            if not _lock(session, tables):
                raise _GaveWay
            small = {t for t in tables if _fewer_than(session, t, half)}
            if "products" not in small:  # filled between the look and the lock
                raise _GaveWay
            rebuilt = [d for t in TABLES if t in small for d in _indexes(session, t, small)]
            with dbapi(session).cursor() as cur:
                for d in rebuilt:
                    for statement in d.drop:
                        cur.execute(statement)
            created = copy(_reserve(session, rows, ledger_rows))
            with dbapi(session).cursor() as cur:
                for d in rebuilt:
                    for statement in d.create:
                        cur.execute(statement)
            return created
    except _GaveWay:
        return None
    except Exception as exc:  # psycopg's errors, not imported where SQLite runs
        if getattr(exc, "sqlstate", None) in _GIVE_WAY:
            return None
        raise


class _GaveWay(Exception):
    pass


@dataclass(frozen=True)
class _Index:
    drop: tuple[str, ...]  # the foreign keys that need it first, then the index
    create: tuple[str, ...]  # the index first, then those keys


def _fewer_than(session: Session, table: str, limit: int) -> bool:
    """Whether ``table`` holds fewer than ``limit`` rows; reads at most ``limit`` of them."""
    with dbapi(session).cursor() as cur:
        cur.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %s) t", (limit,))
        (n,) = cur.fetchone()
    return bool(n < limit)


def _referencing(session: Session) -> list[str]:
    """The tables with a foreign key into ``TABLES`` (listings, order lines: into products)."""
    with dbapi(session).cursor() as cur:
        cur.execute("SELECT DISTINCT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
                    "AND confrelid = ANY(%s::regclass[]) AND NOT conrelid = ANY(%s::regclass[]) ORDER BY 1",
                    (list(TABLES), list(TABLES)))
        return [t for (t,) in cur.fetchall()]


def _lock(session: Session, tables: list[str]) -> bool:
    """ACCESS EXCLUSIVE on ``tables``, waiting at most ``LOCK_WAIT``; False if not granted."""
    with dbapi(session).cursor() as cur:
        cur.execute("SELECT current_setting('lock_timeout')")
        (before,) = cur.fetchone()
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_WAIT,))
        try:
            cur.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == "55P03":
                return False
            raise
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (before,))
    return True


def _indexes(session: Session, table: str, small: set[str]) -> list[_Index]:
    """``table``'s indexes, each with how to drop it and make it again, from the catalogue.

    An index a foreign key needs (products' primary key) goes with that key,
    which is made again after it (and checks the referencing rows again):
    only where every referencing table is in ``small``.
    """
    with dbapi(session).cursor() as cur:
        cur.execute(
            "SELECT i.indexrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), "
            "pg_get_indexdef(i.indexrelid), ARRAY(SELECT ARRAY[f.conrelid::regclass::text, f.conname, "
            "pg_get_constraintdef(f.oid)] FROM pg_constraint f WHERE f.contype = 'f' "
            "AND f.conindid = i.indexrelid ORDER BY f.conname) FROM pg_index i "
            "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
            "AND c.contype IN ('p', 'u', 'x') WHERE i.indrelid = %s::regclass ORDER BY 1", (table,))
        rows = cur.fetchall()
    out = []
    for index, constraint, constraint_def, index_def, keys in rows:
        if any(referencing not in small for referencing, _, _ in keys):
            continue
        drop_keys = tuple(f"ALTER TABLE {t} DROP CONSTRAINT {_quoted(name)}" for t, name, _ in keys)
        make_keys = tuple(f"ALTER TABLE {t} ADD CONSTRAINT {_quoted(name)} {d}" for t, name, d in keys)
        if constraint is None:
            out.append(_Index((*drop_keys, f"DROP INDEX {index}"), (index_def, *make_keys)))
        else:
            out.append(_Index((*drop_keys, f"ALTER TABLE {table} DROP CONSTRAINT {_quoted(constraint)}"),
                              (f"ALTER TABLE {table} ADD CONSTRAINT {_quoted(constraint)} {constraint_def}",
                               *make_keys)))
    return out


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reserve(session: Session, rows: int, ledger_rows: int) -> Ids:
    """Each range with one setval: nobody else can take these sequences' ids under the lock."""
    firsts, steps = [], []
    with dbapi(session).cursor() as cur:
        for table, n in (("products", rows), ("ledger", ledger_rows)):
            if n == 0:
                firsts.append(0)
                steps.append(1)
                continue
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,))
            (sequence,) = cur.fetchone()
            cur.execute("SELECT nextval(%s::regclass), seqincrement FROM pg_sequence "
                        "WHERE seqrelid = %s::regclass", (sequence, sequence))
            first, step = cur.fetchone()
            if n > 1:
                cur.execute("SELECT setval(%s::regclass, %s)", (sequence, first + (n - 1) * step))
            firsts.append(first)
            steps.append(step)
    return Ids(products=firsts[0], ledger=firsts[1], product_step=steps[0], ledger_step=steps[1])
