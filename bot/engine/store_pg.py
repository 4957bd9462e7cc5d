"""The store on PostgreSQL: the same `Store` interface, for deployed bots and replicas.

    >>> store = PgStore("postgresql://postgres@127.0.0.1:5432/runbook_bot")   # doctest: +SKIP
    >>> store.path                       # what messages and /healthz show: never the password
    'postgresql://postgres@127.0.0.1:5432/runbook_bot'

Selected by `RUNBOOK_BOT_DB=postgresql://...` or, when that is unset, by `DATABASE_URL` (the
platforms' convention); see `bot.engine.store.open_store`.

How SQLite's guarantees carry over:

- **One writer at a time.** Every `transaction()` takes `pg_advisory_xact_lock(WRITE_LOCK)` first,
  the exact counterpart of SQLite's `BEGIN IMMEDIATE` across every replica on the database. So each
  read-then-write in the engine, the watch, the outbox and the reminders stays a compare-and-set
  without auditing every statement for `SELECT ... FOR UPDATE`; the conditional `UPDATE ... WHERE
  state = ...` and the audit event commit together, as on SQLite. The lock is held for one short
  transaction (well under a millisecond of server time); readers never take it.
- **Reads outside a transaction** borrow a pooled connection (psycopg_pool) in autocommit for one
  statement and fetch eagerly. Inside `transaction()`, `conn()` returns the transaction's own
  connection, so a caller's reads see its own uncommitted writes, as with SQLite's per-thread
  connection (and never wait on a row lock their own transaction holds).
- **Errors** become `StoreFault` (one line, no traceback); a connection lost while committing is
  reported as an unknown outcome, not as "nothing was recorded".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from bot import secrets
from bot.engine import store_pg_dialect as dialect
from bot.engine import store_pg_schema
from bot.engine.store import Store
from bot.engine.store_faults import StoreFault

_TYPES = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION", bytes: "BYTEA"}


def display_url(url: str) -> str:
    """The URL without its password (and without query options that could carry one)."""
    parts = conninfo.conninfo_to_dict(url)
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _quote(name: str) -> str:
    return f'"{name}"' if name in {"user", "order", "group", "default"} else name


class _Conn:
    """One psycopg connection behind the store's `execute(sql, params)` (SQLite dialect in)."""

    def __init__(self, raw: psycopg.Connection, store: PgStore) -> None:
        self.raw = raw
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> dialect.Result:
        with self.raw.cursor() as cursor:
            return dialect.run(cursor, sql, params, self._store.translated)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


class _Pooled:
    """What `conn()` returns outside a transaction: each statement on a pooled autocommit connection.

    A pooled connection can be dead (the server restarted, a fail-over, an idle timeout) without the
    pool knowing; checking each one as it leaves the pool would cost a round trip per statement. So a
    read that fails on a lost connection is asked once more, on a fresh one (psycopg_pool discards the
    broken connection when it comes back); a write is never repeated (it may have been applied)."""

    def __init__(self, store: PgStore) -> None:
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> dialect.Result:
        reads = sql.lstrip()[:6].upper() == "SELECT"
        for attempt in (1, 2):
            try:
                with self._store.pool.connection() as raw:
                    return _Conn(raw, self._store).execute(sql, params)
            except psycopg.OperationalError as exc:
                if not (reads and attempt == 1):
                    raise self._store.explain(exc) from None
            except (psycopg.Error, PoolTimeout) as exc:
                raise self._store.explain(exc) from None
        raise AssertionError("unreachable")

    in_transaction = False


class PgStore(Store):
    """`Store` on a PostgreSQL database (psycopg 3 and a connection pool)."""

    def __init__(self, url: str, *, clock: Any = None, pool_size: int = 16) -> None:  # noqa: D107
        self.url = url
        self.path = display_url(url)  # every message, log line and /healthz shows this one
        password = conninfo.conninfo_to_dict(url).get("password")
        if password:
            secrets.register(password)
        self.now = (clock.now if clock is not None else time.time)
        self._local = threading.local()
        self._keys: dict[str, tuple[str, ...]] = {}
        try:  # one direct connection first: an unreachable or refusing server is named at once, not after 15 s
            with psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="runbook-bot") as raw:
                self.schema_version = store_pg_schema.migrate(raw, self.path)[1]
        except psycopg.OperationalError as exc:
            raise StoreFault(self.path, self._unreachable(exc)) from None
        self._sql: dict[str, str] = {}
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, timeout=30,
                                   kwargs={"autocommit": True, "connect_timeout": 10,
                                           "application_name": "runbook-bot"})
        try:
            self.pool.open(wait=True, timeout=15)
        except PoolTimeout:
            self.pool.close()
            raise StoreFault(self.path, "cannot open connections to the PostgreSQL store within 15 s; "
                                        "check RUNBOOK_BOT_DB / DATABASE_URL") from None

    @staticmethod
    def _unreachable(exc: psycopg.Error) -> str:
        lines = str(exc).strip().splitlines()
        first = secrets.redact(lines[0]) if lines else type(exc).__name__
        return f"cannot connect to the PostgreSQL store ({first}); check RUNBOOK_BOT_DB / DATABASE_URL"

    # -- connections ------------------------------------------------------------------------------

    def conn(self) -> Any:  # type: ignore[override]
        return getattr(self._local, "tx", None) or _Pooled(self)

    @property
    def db(self) -> Any:  # sqlite-utils has no PostgreSQL backend; nothing outside the store needs it
        raise AttributeError("PgStore has no sqlite-utils view; use conn().execute")

    def explain(self, exc: BaseException, *, committing: bool = False) -> StoreFault:
        text = secrets.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
            if committing:
                return StoreFault(self.path, f"the connection to the store failed while committing ({text}); the "
                                             "change may or may not be recorded: check `runbook-bot status`")
            return StoreFault(self.path, f"the PostgreSQL store is unreachable ({text}); nothing was recorded")
        return StoreFault(self.path, f"the store failed: {text}; nothing was recorded")

    @contextmanager
    def transaction(self) -> Iterator[Any]:  # type: ignore[override]
        """One transaction holding the store's write lock (see the module docstring)."""
        if getattr(self._local, "tx", None) is not None:
            raise RuntimeError("store transactions do not nest")
        stack = self._begin()
        body_done = False
        try:
            with stack:
                self._local.tx = _Conn(stack.raw, self)
                try:
                    yield self._local.tx
                finally:
                    self._local.tx = None
                body_done = True
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.explain(exc, committing=body_done) from None

    def _begin(self) -> ExitStack:
        """A pooled connection in a transaction holding WRITE_LOCK. A connection found dead at BEGIN
        (nothing done yet) is dropped and the start tried once more, on a fresh one."""
        for attempt in (1, 2):
            stack = ExitStack()
            try:
                raw = stack.enter_context(self.pool.connection())
                stack.enter_context(raw.transaction())
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (store_pg_schema.WRITE_LOCK,))
                stack.raw = raw  # type: ignore[attr-defined]
                return stack
            except psycopg.OperationalError as exc:
                stack.__exit__(type(exc), exc, exc.__traceback__)  # the pool discards the broken connection
                if attempt == 2:
                    raise self.explain(exc) from None
            except (psycopg.Error, PoolTimeout) as exc:
                stack.__exit__(type(exc), exc, exc.__traceback__)
                raise self.explain(exc) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.close()

    # -- schema -----------------------------------------------------------------------------------

    def _create_schema(self) -> None:  # migrations run in __init__, on a pooled connection
        pass

    def translated(self, sql: str) -> str:
        """The PostgreSQL text of one of the store's statements (translated once)."""
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = dialect.translate(sql, self.primary_key)
        return text

    def primary_key(self, table: str) -> tuple[str, ...]:
        """The primary key columns of `table` (for upserts), from the catalog, cached."""
        if table not in self._keys:
            with self.pool.connection() as raw:
                rows = raw.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                    " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) AND i.indisprimary"
                    " ORDER BY array_position(i.indkey::int2[], a.attnum)", (table,)).fetchall()
            if not rows:
                raise StoreFault(self.path, f"table {table} has no primary key to upsert on")
            self._keys[table] = tuple(r[0] for r in rows)
        return self._keys[table]

    def ensure_table(self, name: str, columns: dict[str, Any], pk: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """`Store.ensure_table` in PostgreSQL types; a single integer key becomes an identity column."""
        keys = (pk,) if isinstance(pk, str) else tuple(pk)
        cols = []
        for column, kind in columns.items():
            sql_type = _TYPES[kind]
            if keys == (column,) and kind is int:
                sql_type += " GENERATED BY DEFAULT AS IDENTITY"
            cols.append(f"{_quote(column)} {sql_type}")
        ddl = (f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)},"
               f" PRIMARY KEY ({', '.join(_quote(k) for k in keys)}))")
        with self.transaction() as conn:
            conn.execute(ddl)

    @staticmethod
    def _step_row(row: Any) -> dict[str, Any]:
        step = Store._step_row(row)
        step.pop("seq", None)  # PostgreSQL's stand-in for SQLite's rowid: an order, not a field
        return step
