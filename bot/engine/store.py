"""The one SQLite file: runs, steps, approvals, events (the audit log), locks.

    >>> from bot.engine.store import Store
    >>> store = Store(":memory:")
    >>> store.create_run(run_id="r1", runbook="demo", runbook_path="demo.yaml", runbook_sha256="ab",
    ...                  params={}, started_by="alice", front_end="console", steps=[])
    >>> store.transition_run("r1", ["running"], "aborted", actor="alice", front_end="console")
    True
    >>> store.transition_run("r1", ["running"], "aborted", actor="bob", front_end="console")
    False

Every change of state is a compare-and-set (`UPDATE ... WHERE state IN (...)`) inside a
`BEGIN IMMEDIATE` transaction that also writes the audit event, so two threads or two processes
racing on one step move it once, and the log never disagrees with the state. The file is in WAL
mode with a busy timeout, so readers never block the writer and concurrent writers queue.

Nothing secret is stored: every JSON column and every message passes through `bot.secrets.redact`.
Tables are created with sqlite-utils; other modules add their own tables through `ensure_table`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from bot import config, secrets
from bot.engine import states, store_migrations
from bot.engine.store_faults import StoreFault, check_identity, check_writable, explain, file_identity

SCHEMA_VERSION = store_migrations.LATEST  # the version this bot writes


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(secrets.redact_obj(value), sort_keys=True, default=str)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; a connection SQLite already rolled back is fine."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.DatabaseError:
        pass  # SQLite rolls back itself on a full disk or I/O error; the original error is what matters


def _use_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch the file to WAL (it stays so: the mode is kept in the file). SQLite answers "database is
    locked" at once, without its busy handler, when another connection switches or holds the file at
    that moment (eight threads opening a new store together hit it), so the switch is retried for as
    long as busy_timeout would have waited."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(0.2, delay * 2)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class Store:
    """Thread-safe access to the store file: one connection per thread, WAL, explicit transactions."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Any = None) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._memory_conn: sqlite3.Connection | None = None
        self._memory_lock = threading.RLock()
        self.now = (clock.now if clock is not None else time.time)
        self._identity: tuple[int, int] | None = None
        if self.path != ":memory:":
            check_writable(self.path)
        try:
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise explain(self.path, exc) from None
        except BaseException:
            self.close()  # a refused store leaves no connection behind to checkpoint into the file later
            raise
        if self.path != ":memory:":
            self._identity = file_identity(self.path)  # a later deletion or swap is detected, not followed

    @classmethod
    def configured(cls, **kwargs: Any) -> Store:
        """The operator's store (`RUNBOOK_BOT_DB`, `DATABASE_URL` or the state folder); a SQLite file is
        refused where it would be lost (`bot.engine.store_placement`). Rehearsals and tests open their own
        with `open_store(where)`."""
        from bot.engine.store_placement import check_durable

        where = config.store_location()
        if not config.is_postgres_url(where):
            check_durable(where)
        elif not os.environ.get("RUNBOOK_BOT_FINGERPRINT_KEY"):
            # The key file beside a SQLite store would be per replica (and lost with an ephemeral disk):
            # fingerprints one replica stored would never compare equal on another.
            from bot.engine.store_pg import display_url

            raise StoreFault(display_url(where), "a PostgreSQL store needs RUNBOOK_BOT_FINGERPRINT_KEY set, to the "
                                                 "same random value on every replica (e.g. `openssl rand -hex 32`)")
        return open_store(where, **kwargs)

    # -- connections --------------------------------------------------------------------------

    def conn(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            if self._memory_conn is None:
                self._memory_conn = self._connect()
            return self._memory_conn
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if self.path != ":memory:":
            _use_wal(conn)
            # NORMAL is durable across application crashes in WAL mode (only an OS crash can lose
            # the last transactions), and it keeps each transition well under a millisecond.
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        return sqlite_utils.Database(self.conn())

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE`: take the write lock up front so a read-then-write cannot race.

        A store error (full disk, read-only file, damaged file, the file deleted under us) rolls
        the transaction back and raises `StoreFault`: one line naming the file and what to do.
        A failed COMMIT is rolled back too, so nothing half-written is ever reported as done.
        """
        lock = self._memory_lock if self.path == ":memory:" else None
        if lock:
            lock.acquire()
        try:
            check_identity(self.path, self._identity)
            try:
                conn = self.conn()
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise explain(self.path, exc) from None
            try:
                yield conn
                if conn.in_transaction:  # sqlite-utils DDL commits on its own (ensure_table)
                    conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise explain(self.path, exc) from None
                raise
        finally:
            if lock:
                lock.release()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- schema --------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        """Apply the numbered migrations the file lacks (`bot.engine.store_migrations`)."""
        self.schema_version = store_migrations.migrate(self.conn(), self.path)[1]

    def ensure_table(self, name: str, columns: dict[str, Any], pk: Any, **kwargs: Any) -> sqlite_utils.db.Table:
        """Create a table other modules own (watches, samples, outbox) if it is not there yet.

        The DDL runs under `BEGIN IMMEDIATE` like every write: run as sqlite-utils' own deferred
        transaction it could fail at once with "database is locked" while another thread wrote
        (SQLite does not wait on a lock upgrade), which made tests/test_slack_watch.py flaky.
        """
        table = self.db[name]
        if not table.exists():
            with self.transaction() as conn:
                sqlite_utils.Database(conn)[name].create(columns, pk=pk, if_not_exists=True, **kwargs)
        return table

    # -- events --------------------------------------------------------------------------------

    def _event(
        self,
        conn: sqlite3.Connection,
        *,
        run_id: str,
        action: str,
        actor: str,
        front_end: str,
        step_key: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        detail: Any = None,
    ) -> None:
        conn.execute(
            "INSERT INTO events(at, run_id, step_key, actor, front_end, action, from_state, to_state, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.now(), run_id, step_key, actor, front_end, action, from_state, to_state, _dumps(detail)),
        )

    def add_event(self, run_id: str, action: str, *, actor: str, front_end: str, step_key: str | None = None,
                  detail: Any = None) -> None:
        """Record something that is not a state change (a refused click, a progress milestone)."""
        with self.transaction() as conn:
            self._event(conn, run_id=run_id, action=action, actor=actor, front_end=front_end,
                        step_key=step_key, detail=detail)

    def last_event_at(self, run_id: str, action: str) -> float | None:
        row = self.conn().execute("SELECT MAX(at) FROM events WHERE run_id = ? AND action = ?",
                                  (run_id, action)).fetchone()
        return row[0] if row else None

    def events(self, run_id: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY id"
        args: tuple[Any, ...] = (run_id,) if run_id else ()
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = [dict(r) for r in self.conn().execute(sql, args)]
        for row in rows:
            row["detail"] = _loads(row["detail"])
        return rows

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        runbook: str,
        runbook_path: str,
        runbook_sha256: str,
        params: dict[str, Any],
        started_by: str,
        front_end: str,
        steps: Sequence[dict[str, Any]],
        lock_keys: Sequence[str] = (),
        chat: dict[str, Any] | None = None,
        dry_run: bool = False,
        targets: dict[str, Any] | None = None,
    ) -> None:
        """Insert a run, its steps and its environment locks in one transaction.

        Raises `LockHeld` naming the run that holds any of `lock_keys`.
        """
        now = self.now()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs(id, runbook, runbook_path, runbook_sha256, params, targets, state, started_by,"
                " front_end, chat, error, dry_run, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, NULL, ?, ?, ?)",
                (run_id, runbook, runbook_path, runbook_sha256, _dumps(params), _dumps(targets), started_by,
                 front_end, _dumps(chat or {}), int(dry_run), now, now),
            )
            self.acquire_locks_in(conn, run_id, lock_keys)  # raises LockHeld: the whole insert rolls back
            for step in steps:
                self._insert_step(conn, run_id, step, now)
            self._event(conn, run_id=run_id, action="run.started", actor=started_by, front_end=front_end,
                        to_state="running", detail={"runbook": runbook, "params": params,
                                                    "sha256": runbook_sha256, "locks": list(lock_keys),
                                                    "dry_run": dry_run})

    def _insert_step(self, conn: sqlite3.Connection, run_id: str, step: dict[str, Any], now: float) -> None:
        conn.execute(
            "INSERT INTO steps(run_id, key, step_id, idx, kind, phase, state, attempt, request_no,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, 0, ?)",
            (run_id, step["key"], step["step_id"], step["idx"], step["kind"], step.get("phase", "forward"), now),
        )

    def add_steps(self, run_id: str, steps: Sequence[dict[str, Any]], *, actor: str, front_end: str,
                  action: str) -> None:
        """Append steps to a run (a rollback sequence), with one audit event."""
        now = self.now()
        with self.transaction() as conn:
            for step in steps:
                self._insert_step(conn, run_id, step, now)
            self._event(conn, run_id=run_id, action=action, actor=actor, front_end=front_end,
                        detail={"steps": [s["key"] for s in steps]})

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self.conn().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._run_row(row) if row else None

    def find_run(self, prefix: str) -> dict[str, Any] | None:
        """A run by id or unique id prefix (people type short ids)."""
        exact = self.get_run(prefix)
        if exact:
            return exact
        rows = self.conn().execute("SELECT * FROM runs WHERE id LIKE ? LIMIT 2", (prefix + "%",)).fetchall()
        return self._run_row(rows[0]) if len(rows) == 1 else None

    def list_runs(self, *, states: Sequence[str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs"
        args: list[Any] = []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args.extend(states)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [self._run_row(r) for r in self.conn().execute(sql, args)]

    @staticmethod
    def _run_row(row: sqlite3.Row) -> dict[str, Any]:
        run = dict(row)
        run["params"] = _loads(run["params"]) or {}
        run["targets"] = _loads(run.get("targets"))
        run["chat"] = _loads(run["chat"]) or {}
        run["dry_run"] = bool(run["dry_run"])
        return run

    def transition_run(self, run_id: str, from_states: Sequence[str], to_state: str, **kwargs: Any) -> bool:
        """Compare-and-set the run's state; True if this call made the move."""
        with self.transaction() as conn:
            return self.transition_run_in(conn, run_id, from_states, to_state, **kwargs)

    def transition_run_in(self, conn: sqlite3.Connection, run_id: str, from_states: Sequence[str], to_state: str,
                          *, actor: str, front_end: str, error: str | None = None, detail: Any = None,
                          release_locks: bool = False) -> bool:
        states.check_run_moves(from_states, to_state)
        row = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row["state"] not in from_states:
            return False
        moved = conn.execute(
            "UPDATE runs SET state = ?, error = ?, updated_at = ? WHERE id = ? AND state = ?",
            (to_state, secrets.redact(error) if error else None, self.now(), run_id, row["state"]),
        ).rowcount
        if moved != 1:  # the compare-and-set's own guard (the write lock makes this unreachable)
            return False
        if release_locks:
            conn.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))
        self._event(conn, run_id=run_id, action=states.RUN_MOVES[(states.RunState(row["state"]),
                                                                  states.RunState(to_state))], actor=actor, front_end=front_end,
                    from_state=row["state"], to_state=to_state,
                    detail=detail if error is None else {"error": error, **(detail or {})})
        return True

    def acquire_locks_in(self, conn: sqlite3.Connection, run_id: str, keys: Sequence[str]) -> None:
        """Take environment locks for `run_id` (raises `LockHeld` naming another holder)."""
        # Insert first, then read who holds it: correct even without the store's write lock.
        for key in keys:
            conn.execute("INSERT OR IGNORE INTO locks(key, run_id, acquired_at) VALUES (?, ?, ?)",
                         (key, run_id, self.now()))
        for key in keys:
            holder = conn.execute("SELECT run_id FROM locks WHERE key = ?", (key,)).fetchone()
            if holder["run_id"] != run_id:
                raise LockHeld(key, holder["run_id"])  # the caller's transaction rolls back what we inserted

    def insert_steps_in(self, conn: sqlite3.Connection, run_id: str, steps: Sequence[dict[str, Any]]) -> None:
        now = self.now()
        for step in steps:
            self._insert_step(conn, run_id, step, now)

    def update_run_fields(self, run_id: str, *, actor: str, front_end: str, action: str, **fields: Any) -> None:
        """Change non-state columns (chat refs, the runbook hash after a re-plan), with an event."""
        allowed = {"chat", "runbook_sha256", "runbook_path", "error"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update run fields {sorted(bad)}")
        values = {k: (_dumps(v) if k == "chat" else v) for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as conn:
            conn.execute(f"UPDATE runs SET {sets}, updated_at = ? WHERE id = ?",
                         (*values.values(), self.now(), run_id))
            self._event(conn, run_id=run_id, action=action, actor=actor, front_end=front_end,
                        detail={k: v for k, v in fields.items() if k != "chat"} or None)

    def set_chat(self, run_id: str, chat: dict[str, Any]) -> None:
        """Front-end references (Slack channel and thread ts); not an audit-worthy change."""
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET chat = ? WHERE id = ?", (_dumps(chat), run_id))

    def lock_holders(self) -> dict[str, str]:
        return {r["key"]: r["run_id"] for r in self.conn().execute("SELECT key, run_id FROM locks")}

    # -- steps ---------------------------------------------------------------------------------

    def get_steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.conn().execute(
            "SELECT * FROM steps WHERE run_id = ? ORDER BY idx, rowid", (run_id,)
        ).fetchall()
        return [self._step_row(r) for r in rows]

    def get_step(self, run_id: str, key: str) -> dict[str, Any] | None:
        row = self.conn().execute("SELECT * FROM steps WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
        return self._step_row(row) if row else None

    @staticmethod
    def _step_row(row: sqlite3.Row) -> dict[str, Any]:
        step = dict(row)
        for col in ("plan", "result", "verification", "undo", "progress"):
            step[col] = _loads(step.get(col))
        return step

    def transition_step(self, run_id: str, key: str, from_states: Sequence[str], to_state: str, **kwargs: Any) -> bool:
        """Compare-and-set one step's state (and set `fields`: plan, result, error, ...) with an event.

        Returns False, changing nothing, when the step is not in `from_states` or the run is not in
        `require_run_state` (an aborted run's steps do not move on).
        """
        with self.transaction() as conn:
            return self.transition_step_in(conn, run_id, key, from_states, to_state, **kwargs)

    STEP_FIELDS = frozenset({"plan", "result", "verification", "error", "requested_at", "started_at",
                             "finished_at", "attempt", "request_no", "owner", "heartbeat_at", "undo"})

    def transition_step_in(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        key: str,
        from_states: Sequence[str],
        to_state: str,
        *,
        actor: str,
        front_end: str,
        action: str | None = None,
        detail: Any = None,
        require_run_state: Sequence[str] | None = ("running", "rolling_back"),
        **fields: Any,
    ) -> bool:
        """`transition_step` inside a transaction the caller holds (approvals use this)."""
        bad = set(fields) - self.STEP_FIELDS
        if bad:
            raise ValueError(f"cannot set step fields {sorted(bad)}")
        states.check_step_moves(from_states, to_state)
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name in ("plan", "result", "verification", "undo"):
                values[name] = _dumps(value)
            elif name == "error":
                values[name] = secrets.redact(value) if value else value
            else:
                values[name] = value
        now = self.now()
        row = conn.execute(
            "SELECT s.state AS state, r.state AS run_state FROM steps s JOIN runs r ON r.id = s.run_id"
            " WHERE s.run_id = ? AND s.key = ?",
            (run_id, key),
        ).fetchone()
        if row is None or row["state"] not in from_states:
            return False
        if require_run_state is not None and row["run_state"] not in require_run_state:
            return False
        sets = "".join(f", {k} = ?" for k in values)
        cur = conn.execute(
            f"UPDATE steps SET state = ?, updated_at = ?{sets} WHERE run_id = ? AND key = ? AND state = ?",
            (to_state, now, *values.values(), run_id, key, row["state"]),
        )
        if cur.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; kept as the invariant's guard
            return False
        conn.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))
        event_detail = detail
        if fields.get("error"):
            event_detail = {"error": fields["error"], **(detail or {})}
        default_action = states.STEP_MOVES[(states.StepState(row["state"]), states.StepState(to_state))]
        self._event(conn, run_id=run_id, step_key=key, action=action or default_action, actor=actor,
                    front_end=front_end, from_state=row["state"], to_state=to_state, detail=event_detail)
        return True

    def busy_steps(self) -> list[dict[str, Any]]:
        """Steps in `applying`/`verifying` of active runs (what the reaper looks at), in one query."""
        rows = self.conn().execute(
            "SELECT s.* FROM steps s JOIN runs r ON r.id = s.run_id WHERE s.state IN ('applying', 'verifying')"
            " AND r.state IN ('running', 'rolling_back')").fetchall()
        return [self._step_row(r) for r in rows]

    def record_undo(self, run_id: str, key: str, undo: dict[str, Any]) -> dict[str, Any]:
        """Write-ahead: merge what undoing a step needs into its row *now*, before (or as) the step
        changes things, so a crash or a lost compare-and-set never loses the way back. Returns the
        merged undo data. Written whatever the step's state: this is a fact about the world."""
        with self.transaction() as conn:
            row = conn.execute("SELECT undo FROM steps WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
            if row is None:
                raise KeyError(f"run {run_id} has no step {key}")
            merged = {**(_loads(row["undo"]) or {}), **undo}
            conn.execute("UPDATE steps SET undo = ? WHERE run_id = ? AND key = ?", (_dumps(merged), run_id, key))
            self._event(conn, run_id=run_id, step_key=key, action="step.undo_recorded", actor="engine",
                        front_end="engine", detail={"keys": sorted(undo)})
        return merged

    def set_progress(self, run_id: str, key: str, record: dict[str, Any]) -> None:
        """The step's latest progress record (one small write a second at most; see Runner)."""
        with self.transaction() as conn:
            conn.execute("UPDATE steps SET progress = ? WHERE run_id = ? AND key = ?", (_dumps(record), run_id, key))

    def mark_apply_started(self, run_id: str, key: str) -> None:
        """The step's `apply` is about to run: from here on, it may have changed something."""
        with self.transaction() as conn:
            conn.execute("UPDATE steps SET apply_started = 1 WHERE run_id = ? AND key = ?", (run_id, key))

    def heartbeat(self, run_id: str, key: str, owner: str) -> None:
        """An applying step's owner says it is alive (no event: this is not a change of state)."""
        with self.transaction() as conn:
            conn.execute("UPDATE steps SET heartbeat_at = ? WHERE run_id = ? AND key = ? AND owner = ?",
                         (self.now(), run_id, key, owner))

    # -- approvals -----------------------------------------------------------------------------

    def approvals(self, run_id: str, key: str, request_no: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM approvals WHERE run_id = ? AND step_key = ?"
        args: list[Any] = [run_id, key]
        if request_no is not None:
            sql += " AND request_no = ?"
            args.append(request_no)
        return [dict(r) for r in self.conn().execute(sql + " ORDER BY id", args)]

    def insert_approval(self, conn: sqlite3.Connection, *, run_id: str, key: str, request_no: int, approver: str,
                        decision: str, reason: str | None, front_end: str) -> bool:
        """Inside a caller's transaction: False if this approver already decided this request."""
        # OR IGNORE and the row count, not a caught IntegrityError: on PostgreSQL any failed statement
        # aborts the whole transaction, and the caller's transaction must go on to say "already decided".
        cur = conn.execute(
            "INSERT OR IGNORE INTO approvals(run_id, step_key, request_no, approver, decision, reason, front_end, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, key, request_no, approver, decision, secrets.redact(reason) if reason else None,
             front_end, self.now()),
        )
        return cur.rowcount == 1

    def event_in(self, conn: sqlite3.Connection, **kwargs: Any) -> None:
        """Write an audit event inside a caller's transaction."""
        self._event(conn, **kwargs)


def open_store(where: str | os.PathLike[str], **kwargs: Any) -> Store:
    """The store at `where`: a `postgresql://` URL (`bot.engine.store_pg.PgStore`) or a SQLite file.

        >>> open_store(":memory:").schema_version == SCHEMA_VERSION
        True
    """
    if config.is_postgres_url(where):
        from bot.engine.store_pg import PgStore  # psycopg_pool is loaded only by bots that use it

        return PgStore(str(where), **kwargs)
    return Store(where, **kwargs)


class LockHeld(Exception):
    """Another active run holds the environment lock."""

    def __init__(self, key: str, run_id: str) -> None:
        self.key = key
        self.run_id = run_id
        super().__init__(f"run {run_id} is already active on {key}; finish or abort it first")
