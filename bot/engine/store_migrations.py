"""Versioned schema migrations of the store: numbered steps, applied in order at start.

    >>> import sqlite3
    >>> conn = sqlite3.connect(":memory:", isolation_level=None)   # autocommit: migrate opens its own transactions
    >>> migrate(conn, "demo.sqlite")
    (0, 2)
    >>> migrate(conn, "demo.sqlite")        # already current: nothing to do
    (2, 2)

Why it is shaped like this: the first release wrote `schema_version = 1` and grew columns with
ad-hoc `ALTER TABLE` at every start, so there was no way to tell an old file from a new one, and no
way for a newer store to refuse an older bot. Now each change of the core tables is one numbered
`Migration`; `migrate` runs every migration above the file's version, each in its own `BEGIN
IMMEDIATE` transaction together with the version it reaches, so

- two processes starting at once migrate once (the second waits for the write lock, then sees the
  new version and does nothing);
- a migration that fails rolls back whole, and the file keeps its previous version and data;
- a store written by a newer bot (a version above `LATEST`) is refused with one line, untouched.

Tables that other modules own (watches, samples, the Slack outbox, App Home viewers) are created by
those modules with `Store.ensure_table`; a change to one of *their* columns is a migration here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.engine.store_faults import StoreFault


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    apply: Callable[[sqlite3.Connection], None]


_V1_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, runbook TEXT, runbook_path TEXT, runbook_sha256 TEXT,"
    " params TEXT, state TEXT, started_by TEXT, front_end TEXT, chat TEXT, error TEXT, dry_run INTEGER,"
    " created_at REAL, updated_at REAL)",
    "CREATE TABLE IF NOT EXISTS steps (run_id TEXT REFERENCES runs(id), key TEXT, step_id TEXT, idx INTEGER,"
    " kind TEXT, phase TEXT, state TEXT, attempt INTEGER, request_no INTEGER, plan TEXT, result TEXT,"
    " verification TEXT, error TEXT, requested_at REAL, started_at REAL, finished_at REAL, updated_at REAL,"
    " owner TEXT, heartbeat_at REAL, PRIMARY KEY (run_id, key))",
    "CREATE TABLE IF NOT EXISTS approvals (id INTEGER PRIMARY KEY, run_id TEXT, step_key TEXT, request_no INTEGER,"
    " approver TEXT, decision TEXT, reason TEXT, front_end TEXT, at REAL)",
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at REAL, run_id TEXT, step_key TEXT, actor TEXT,"
    " front_end TEXT, action TEXT, from_state TEXT, to_state TEXT, detail TEXT)",
    "CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, run_id TEXT, acquired_at REAL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS approvals_once ON approvals(run_id, step_key, request_no, approver)",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id)",
    "CREATE INDEX IF NOT EXISTS runs_state ON runs(state)",
)


def _v1_first_release(conn: sqlite3.Connection) -> None:
    # Plain DDL, not sqlite-utils: its `create` commits on its own, which would end the migration's
    # transaction halfway. IF NOT EXISTS: a first-release file may hold these without a version row.
    for sql in _V1_TABLES:
        conn.execute(sql)


def _v2_undo_and_rendered_targets(conn: sqlite3.Connection) -> None:
    # Files that called themselves version 1 may already have some of these columns (the first
    # release added them at start without a version), so each is added only when missing.
    for table, column, sql_type in (("steps", "undo", "TEXT"), ("steps", "apply_started", "INTEGER"),
                                    ("runs", "targets", "TEXT")):
        if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _v3_leases(conn: sqlite3.Connection) -> None:
    # Named leases (`bot.engine.leases`): the watch scheduler and the Slack outbox drainer, one
    # holder each across replicas. The watch's older `watch_leases` rows expire on their own.
    conn.execute("CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT, expires_at REAL,"
                 " acquired_at REAL)")


def _v4_step_progress(conn: sqlite3.Connection) -> None:
    # The last progress record of a step (JSON: phase, done/total, rate, ETA, the phases so far), so every
    # front end and `status` in another process show where a long step is.
    if "progress" not in {r[1] for r in conn.execute("PRAGMA table_info(steps)")}:
        conn.execute("ALTER TABLE steps ADD COLUMN progress TEXT")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, steps, approvals, events, locks", _v1_first_release),
    Migration(2, "write-ahead undo, apply_started, rendered targets", _v2_undo_and_rendered_targets),
    Migration(3, "named leases (one watch scheduler, one outbox drainer)", _v3_leases),
    Migration(4, "a step's progress record", _v4_step_progress),
)
LATEST = MIGRATIONS[-1].version


def stored_version(conn: sqlite3.Connection) -> int:
    """The file's schema version (0 for a new, empty file)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def refuse_newer(where: str, current: int, latest: int) -> None:
    """A store written by a newer bot is never touched by an older one (both backends)."""
    if current > latest:
        raise StoreFault(where, f"store schema {current} is newer than this bot ({latest}): upgrade the bot "
                                "(the store was not changed)")


def migrate(conn: sqlite3.Connection, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """Bring the store at `path` up to the last of `migrations`; returns (version found, version now).

    Raises `StoreFault` when the file is newer than this bot, or when a migration fails (that
    migration is rolled back; the file keeps the version it had before it).
    """
    latest = migrations[-1].version
    found = None
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = stored_version(conn)
            found = current if found is None else found
            refuse_newer(path, current, latest)
            if migration.version <= current:
                conn.execute("COMMIT")
                continue
            migration.apply(conn)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                         (str(migration.version),))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, StoreFault):
                raise
            if isinstance(exc, sqlite3.DatabaseError):
                raise  # the store's own layer explains SQLite's errors (disk full, read-only, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreFault(path, f"schema migration {migration.version} ({migration.what}) failed: {first}; "
                                   f"the store stays at version {stored_version(conn)}") from exc
    return found or 0, stored_version(conn)
