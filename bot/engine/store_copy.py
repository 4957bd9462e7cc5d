"""`runbook-bot store migrate --to postgresql://...`: a SQLite store copied into PostgreSQL, verified.

    report = copy_store("state/runbook-bot.sqlite", "postgresql://bot@db/runbook_bot")
    report.tables        # {"runs": 12, "steps": 80, "events": 913, "bot_watches": 2, ...}: rows, both sides equal

For a team that started small on the embedded file and now deploys the bot with replicas. Every
table in the file is copied: the engine's (runs, steps, approvals, events, locks) and the ones
other modules own (watches and samples, the Slack outbox and message refs, reminders), so a run
in the middle of a migration carries on where it was, with its audit trail and its watch.

What makes it safe to run on the store a team depends on:

- **The file is only read** (once brought to this bot's schema version, as a start would), in one
  read transaction: a consistent snapshot even if a bot is still running on it; writes after the
  snapshot are not copied, so stop the bots first.
- **The target must be empty**: a database that already holds runs is refused, untouched (a
  second copy would double every audit row).
- **All or nothing**: the rows go over in one PostgreSQL transaction; a row PostgreSQL refuses
  (text in an integer column, which SQLite accepts) rolls the whole copy back and is named.
- **Verified**: after the commit each table's row count and a digest of its rows are compared on
  both sides; identity sequences are moved past the copied ids so the next insert cannot collide.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bot.engine.store import Store
from bot.engine.store_faults import StoreFault

_AFFINITY = (("INT", int), ("REAL", float), ("FLOA", float), ("DOUB", float), ("BLOB", bytes))


class CopyRefused(Exception):
    """The copy did not happen (or was rolled back whole); `str()` is the one line to show."""


@dataclass
class CopyReport:
    source: str
    target: str
    tables: dict[str, int] = field(default_factory=dict)


def _python_type(declared: str) -> type:
    upper = (declared or "").upper()
    return next((kind for marker, kind in _AFFINITY if marker in upper), str)


def _source_tables(conn: sqlite3.Connection) -> dict[str, tuple[list[str], dict[str, type], tuple[str, ...]]]:
    """{table: (columns, {column: python type}, primary key)} for every table of the file but `meta`."""
    out = {}
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE"
                                        " 'sqlite_%' AND name != 'meta' ORDER BY name")]
    for name in names:
        info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        columns = [row[1] for row in info]
        pk = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        out[name] = (columns, {row[1]: _python_type(row[2]) for row in info}, pk)
    return out


def _digest(rows: list[tuple[Any, ...]]) -> str:
    """Order-free digest of a table's rows (SQLite and PostgreSQL sort text differently)."""
    return hashlib.sha256("\n".join(sorted(repr(tuple(row)) for row in rows)).encode()).hexdigest()


def _quoted(column: str) -> str:
    return f'"{column}"'


def copy_store(source: str | Path, target_url: str, *,
               progress: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy the SQLite store at `source` into the (empty) PostgreSQL store at `target_url`."""
    from bot.engine.store_pg import PgStore  # psycopg_pool only for this command and PostgreSQL stores

    source = Path(source)
    if not source.is_file():
        raise CopyRefused(f"{source}: no store file there (give the file with --db or RUNBOOK_BOT_DB)")
    Store(source).close()  # brings an older file up to this bot's schema, as a start would
    target = PgStore(target_url)
    report = CopyReport(str(source), target.path)
    try:
        snapshot = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            snapshot.execute("BEGIN")  # one read transaction: every table from the same moment
            tables = _source_tables(snapshot)
            _refuse_non_empty(target, tables)
            copied = _copy_rows(snapshot, target, tables, progress)
            expected = {name: _digest(rows) for name, rows in copied.items()}
        finally:
            snapshot.close()
        for name, digest in expected.items():
            columns = tables[name][0]
            rows = target.conn().execute(f"SELECT {', '.join(map(_quoted, columns))} FROM {name}").fetchall()
            if len(rows) != len(copied[name]) or _digest(rows) != digest:
                raise CopyRefused(f"{target.path}: table {name} differs after the copy ({len(rows)} rows there, "
                                  f"{len(copied[name])} in the file); the copy is not to be trusted")
            report.tables[name] = len(rows)
    finally:
        target.close()
    return report


def _refuse_non_empty(target: Any, tables: dict[str, Any]) -> None:
    held = []
    for name in ["runs", *sorted(tables)]:
        exists = target.conn().execute("SELECT to_regclass(?)", (name,)).fetchone()[0]
        if exists and target.conn().execute(f"SELECT count(*) FROM {name}").fetchone()[0]:
            held.append(name)
    if held:
        raise CopyRefused(f"{target.path}: the target store is not empty ({', '.join(sorted(set(held)))} hold rows); "
                          "copy into an empty database (nothing was changed)")


def _copy_rows(snapshot: sqlite3.Connection, target: Any, tables: dict[str, Any],
               progress: Callable[[str, int], None] | None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, in one PostgreSQL transaction; {table: the rows sent}."""
    for name, (_, types, pk) in tables.items():  # tables other modules own, made as those modules would
        target.ensure_table(name, types, pk=pk if len(pk) != 1 else pk[0])
    sent: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with target.transaction() as conn:
            for name, (columns, _, _) in tables.items():
                missing = [c for c in columns if c not in _target_columns(conn, name)]
                if missing:
                    raise CopyRefused(f"{target.path}: table {name} has no column {missing[0]} (is the target "
                                      "store from another bot version?); nothing was copied")
                order = " ORDER BY rowid" if name == "steps" else ""  # steps keep their insertion order (seq)
                rows = snapshot.execute(f"SELECT {', '.join(map(_quoted, columns))} FROM {name}{order}").fetchall()
                sent[name] = rows
                try:
                    with conn.raw.cursor().copy(f"COPY {name} ({', '.join(map(_quoted, columns))}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                except psycopg.errors.DataError as exc:  # a value SQLite kept and PostgreSQL's type refuses
                    where = (exc.diag.context or "").splitlines()[0] if exc.diag.context else f"COPY {name}"
                    raise CopyRefused(f"{target.path}: {where}: {str(exc).splitlines()[0]}; the copy was rolled "
                                      "back whole, the target is as it was") from None
                _advance_identities(conn, name)
                if progress:
                    progress(name, len(rows))
    except StoreFault as exc:
        raise CopyRefused(f"{exc}; the copy was rolled back whole, the target is as it was") from None
    return sent


def _target_columns(conn: Any, table: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema ="
                                       " current_schema() AND table_name = ?", (table,)).fetchall()}


def _advance_identities(conn: Any, table: str) -> None:
    """Move each identity sequence past the ids just copied (explicit ids do not advance it)."""
    for (column,) in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema ="
                                  " current_schema() AND table_name = ? AND is_identity = 'YES'", (table,)).fetchall():
        if column == "seq":
            continue  # not copied: the rows took fresh values, in order
        conn.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), m) FROM (SELECT max({_quoted(column)}) AS m"
                     f" FROM {table}) AS t WHERE m IS NOT NULL", (table, column))
