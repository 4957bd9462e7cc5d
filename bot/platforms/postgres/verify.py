"""Prove a copy: per table an exact row count and an order-independent checksum, computed server side
on both sides at once; sequences' values; extensions; large objects.

    src = measure(source_ep, tables, jobs=2)               # or measured under the copy's snapshot
    tgt = measure(target_ep, tables, jobs=2)
    report = compare(src, tgt)
    report.ok, report.mismatches                          # [Mismatch(kind='table', name='public.t', ...)]

The checksum is `count(*)` and the sum of 64-bit row hashes over the table (the idea of pgcopydb's
`compare data`: no primary key needed, no ordering, no rows leave the server). Two methods, the same
on both sides: `text` hashes `row::text` (any version); `typed` (both servers 14+) hashes ROW(...)
with `hash_record_extended`, exact-hash columns (integers, text, bytea, timestamps, uuid, ...) as they
are and every other column through its text form, about twice as fast with the same fidelity (see
:data:`EXACT_HASH_TYPES`); `columns` (both 14+, the default) hashes each column with its type's own
hash function called directly, seeded by its position, and XORs them, which skips building a record
per row (another 30% off on pgbench's accounts and history); the columns without a callable hash
function (bytea, date, bool, "char") still go through one `hash_record_extended`. Text forms depend on TimeZone, DateStyle, IntervalStyle,
extra_float_digits, bytea_output and lc_monetary, so every measuring connection pins them
(`connect.SESSION_SETTINGS`).

Source measures may be taken under the copy's exported snapshot (`snapshot=`): then they describe
exactly what was copied, even while the application keeps writing to the source.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from bot.platforms.postgres.connect import Endpoint, connect, qualified
from bot.platforms.postgres.preflight import MARKER_TABLE

_USER_REL = ("n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND NOT EXISTS (SELECT 1 FROM pg_depend d "
             "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')")


@dataclass
class Measures:
    """What one side holds. `tables`: name -> [rows, checksum]; `sequences`: name -> [last_value, is_called]."""

    tables: dict[str, list[Any]] = field(default_factory=dict)
    sequences: dict[str, list[Any]] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    large_objects: int = 0
    all_tables: list[str] = field(default_factory=list)
    marker: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measures:
        return cls(**data)


@dataclass
class Mismatch:
    kind: str        # table | sequence | extension | large_objects | copy
    name: str
    measure: str     # rows | checksum | missing | extra | last_value | count | marker
    source: str
    target: str

    def describe(self) -> str:
        return f"{self.kind} {self.name}: {self.measure} differs (source {self.source}, target {self.target})"


@dataclass
class Report:
    ok: bool
    mismatches: list[Mismatch]
    tables_checked: int
    rows_checked: int
    sequences_checked: int

    def summary(self) -> str:
        if self.ok:
            return (f"verified {self.tables_checked} tables ({self.rows_checked} rows, counts and checksums), "
                    f"{self.sequences_checked} sequences, extensions and large objects: all equal")
        shown = "; ".join(m.describe() for m in self.mismatches[:10])
        more = f" (and {len(self.mismatches) - 10} more)" if len(self.mismatches) > 10 else ""
        return f"{len(self.mismatches)} differences: {shown}{more}"

    def table(self) -> list[list[str]]:
        rows = [["kind", "name", "measure", "source", "target"]]
        rows += [[m.kind, m.name, m.measure, m.source, m.target] for m in self.mismatches]
        return rows


def list_tables(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        f"""SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND {_USER_REL} AND c.relname <> %s
            ORDER BY pg_table_size(c.oid) DESC""", (MARKER_TABLE,)).fetchall()]


def _split(name: str) -> tuple[str, str]:
    schema, _, table = name.partition(".")
    return schema, table


# Types whose hash function is exact (equal hash input <=> identical value): hashed as they are. Every
# other column is hashed through its text form, because its hash follows its *equality*, which is
# looser than identity (numeric 1.0 = 1.00, citext 'A' = 'a', interval '1 day' = '24 hours',
# float -0 = 0) or depends on OIDs that differ between databases (enums).
EXACT_HASH_TYPES = {"int2", "int4", "int8", "bool", "text", "varchar", "bpchar", "bytea", "date", "time",
                    "timestamp", "timestamptz", "uuid", "oid", "char"}
_COLLATABLE = {"text", "varchar", "bpchar"}
METHODS = ("columns", "typed", "text")

# For the `columns` method: the exact types whose extended hash function SQL can call directly
# (`{c}` the column, `{s}` its seed). timestamptz's own function takes a timestamp: AT TIME ZONE 'UTC'
# converts without loss (no DST at UTC, infinity stays infinity), where a plain cast would fold the
# repeated hour of a DST change. The other exact types' hash functions are not callable from SQL (bytea's
# takes `internal`) or take another type (date's takes int4), so they go through hash_record_extended.
_COLUMN_HASH = {
    "int2": "hashint2extended({c}, {s})", "int4": "hashint4extended({c}, {s})",
    "int8": "hashint8extended({c}, {s})", "oid": "hashoidextended({c}, {s})",
    "text": 'hashtextextended({c} COLLATE "C", {s})', "varchar": 'hashtextextended({c} COLLATE "C", {s})',
    "bpchar": 'hashbpcharextended({c} COLLATE "C", {s})', "uuid": "uuid_hash_extended({c}, {s})",
    "time": "time_hash_extended({c}, {s})", "timestamp": "timestamp_hash_extended({c}, {s})",
    "timestamptz": "timestamp_hash_extended({c} AT TIME ZONE 'UTC', {s})",
}
# What a NULL hashes to (XORed with the column's position, so a NULL moving to another column shows).
_NULL_HASH = 7046029254386353131


def _columns(conn: psycopg.Connection, name: str) -> list[tuple[str, str, bool, bool]]:
    """(quoted column of `t`, type name, built in, NOT NULL) in column order."""
    cols = conn.execute(
        """SELECT a.attname, t.typname, t.typnamespace = 'pg_catalog'::regnamespace, a.attnotnull
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
        (qualified(*_split(name)),)).fetchall()
    return [("t." + '"' + column.replace('"', '""') + '"', type_name, builtin, not_null)
            for column, type_name, builtin, not_null in cols]


def row_expression(conn: psycopg.Connection, name: str) -> str:
    """The hashed form of a row for the `typed` method: ROW(exact columns as they are, the rest as text).

    `hash_record_extended` (PostgreSQL 14+) hashes each column with its type's own hash: for fixed-width
    types that skips the text conversion that dominates `row::text` (about twice as fast overall).
    """
    parts = []
    for ident, type_name, builtin, _not_null in _columns(conn, name):
        if builtin and type_name in EXACT_HASH_TYPES:
            parts.append(f'{ident} COLLATE "C"' if type_name in _COLLATABLE else ident)
        else:
            parts.append(f'{ident}::text COLLATE "C"')
    return f"ROW({', '.join(parts)})" if parts else ""


def columns_expression(conn: psycopg.Connection, name: str) -> str:
    """The 64-bit hash of a row for the `columns` method: each column's own hash, seeded by its position,
    XORed together; a NULL hashes to a constant per position. Exact like `typed` (same types hashed as
    they are, the rest through their text form), without building a record for every row.

        columns_expression(conn, "public.pgbench_accounts")
        # 'hashint4extended(t."aid", 1) # coalesce(hashint4extended(t."bid", 2), ...) # ...'
    """
    parts, in_record = [], []
    for position, (ident, type_name, builtin, not_null) in enumerate(_columns(conn, name), start=1):
        if builtin and type_name in _COLUMN_HASH:
            hashed = _COLUMN_HASH[type_name].format(c=ident, s=position)
        elif builtin and type_name in EXACT_HASH_TYPES:
            in_record.append(ident)
            continue
        else:
            hashed = f'hashtextextended({ident}::text COLLATE "C", {position})'
        parts.append(hashed if not_null else f"coalesce({hashed}, {_NULL_HASH ^ position})")
    if in_record:
        # One record of the rest; ROW(...) hashes NULLs itself, and its seed keeps it apart from column 0.
        parts.append(f"hash_record_extended(ROW({', '.join(in_record)}), -1)")
    return " # ".join(parts) if parts else "0"


# The `text` method's row hash (any version), and what a `typed` table without columns falls back to.
_TEXT_ROW_HASH = "hashtextextended(t::text, 0)"


def row_hash(conn: psycopg.Connection, name: str, method: str) -> str:
    """The SQL expression of one row's 64-bit hash (the row is `t`) by `method`."""
    if method == "columns":
        return columns_expression(conn, name)
    row = row_expression(conn, name) if method == "typed" else ""
    return f"hash_record_extended({row}, 0)" if row else _TEXT_ROW_HASH


def checksum_sql(name: str, hashed: str = _TEXT_ROW_HASH) -> str:
    """count(*) and the sum of 64-bit row hashes; `hashed` from :func:`row_hash`."""
    return f"SELECT count(*), coalesce(sum({hashed}), 0)::text FROM ONLY {qualified(*_split(name))} AS t"


def table_checksum(conn: psycopg.Connection, name: str, method: str) -> tuple[int, str]:
    """(rows, checksum) of one table by `method` ("columns", "typed" or "text")."""
    rows, checksum = conn.execute(checksum_sql(name, row_hash(conn, name, method))).fetchone()
    return rows, checksum


def stamped_checksum(conn: psycopg.Connection, name: str, method: str) -> list[Any]:
    """[rows, checksum, horizon, writer xid]: a checksum that :func:`changed_since` can later prove still
    current without hashing again (autocommit connection).

    `horizon`: the oldest transaction running just before the checksum (32-bit xid): any row written
    after the checksum has an xmin at or past it. `writer`: the xmin of one row, i.e. the transaction
    that loaded the table (a COPY commits a table's rows in one transaction); its rows are exempt."""
    horizon = int(conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()[0]) % 2**32
    rows, checksum = table_checksum(conn, name, method)
    writer = conn.execute(f"SELECT xmin::text FROM ONLY {qualified(*_split(name))} LIMIT 1").fetchone()
    return [rows, checksum, horizon, int(writer[0]) if writer else None]


def changed_since(ep: Endpoint, stamped: dict[str, list[Any]], *, jobs: int = 2) -> list[str]:
    """The tables whose rows may differ from their :func:`stamped_checksum` (more or fewer rows, or a row
    written by a transaction other than the loader at or past the horizon). One scan of `xmin` per
    table: no column is read, so it costs a fraction of a checksum. A table it cannot prove unchanged
    is listed (the caller measures it again), never passed."""
    def check(conn: psycopg.Connection, name: str) -> bool:
        rows, _checksum, horizon, writer = (list(stamped[name]) + [None, None])[:4]
        if rows is None or horizon is None:
            return True
        # age() of both sides in one statement: x is at or past the horizon  <=>  age(x) <= age(horizon).
        exempt = "" if writer is None else f" AND xmin <> '{int(writer)}'::xid"
        count, newer = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE age(xmin) <= age('{int(horizon)}'::xid){exempt}) "
            f"FROM ONLY {qualified(*_split(name))}").fetchone()
        return count != rows or newer > 0

    changed: list[str] = []

    def one(conn: psycopg.Connection, name: str) -> bool:
        try:
            if check(conn, name):
                changed.append(name)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            changed.append(name)
        return True

    _per_table(lambda: connect(ep, application_name="runbook-bot-verify"), list(stamped), jobs, one)
    return sorted(changed)


def _open(ep: Endpoint, snapshot: str | None, application_name: str = "runbook-bot-verify") -> psycopg.Connection:
    if snapshot is None:
        return connect(ep, application_name=application_name)
    conn = connect(ep, autocommit=False, application_name=application_name)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    # The first statement of the transaction: SET TRANSACTION SNAPSHOT must precede every query.
    conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return conn


@contextmanager
def held_snapshot(ep: Endpoint) -> Iterator[str]:
    """Export a snapshot of `ep` and hold it (its transaction stays open) until the block ends.

        with held_snapshot(src) as snap:
            open_writes()                              # the data moves on; `snap` does not
            measure_tables(src, names, snapshot=snap)

    What lets db.replicate.cutover verify *after* opening writes: the snapshots are taken while both
    sides are still, and the checksums run on them while the application writes to the new side.
    """
    conn = connect(ep, autocommit=False, application_name="runbook-bot-snapshot")
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        yield conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    finally:
        conn.close()


def measure_tables(ep: Endpoint, names: list[str], *, jobs: int = 2, snapshot: str | None = None,
                   method: str = "columns", cancelled: threading.Event | None = None) -> dict[str, list[Any]]:
    """[rows, checksum] per table, `jobs` connections working through the list biggest first.

    `method`: "columns" or "typed" (PostgreSQL 14+ on both sides; see :func:`columns_expression`,
    :func:`row_expression`) or "text" (`row::text`, any version). Both sides of a comparison must use
    the same one.
    """
    out: dict[str, list[Any]] = {}

    def one(conn: psycopg.Connection, name: str) -> bool:
        try:
            out[name] = list(table_checksum(conn, name, method))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            out[name] = [None, None]
            return snapshot is None  # a snapshot transaction is aborted: other workers take the rest
        return True

    _per_table(lambda: _open(ep, snapshot), names, jobs, one, cancelled)
    return out


def _per_table(opener: Callable[[], psycopg.Connection], names: list[str], jobs: int,
               one: Callable[[psycopg.Connection, str], bool], cancelled: threading.Event | None = None) -> None:
    """`jobs` connections from `opener` working through `names` (in order); a worker ends when `one`
    returns False (its connection is no longer usable) or `cancelled` is set."""
    work: queue.Queue[str] = queue.Queue()
    for name in names:
        work.put(name)

    def worker() -> None:
        with opener() as conn:
            while not (cancelled and cancelled.is_set()):
                try:
                    name = work.get_nowait()
                except queue.Empty:
                    return
                if not one(conn, name):
                    return

    count = max(1, min(jobs, len(names)))
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(worker) for _ in range(count)]:
            future.result()


class PairMeasurer:
    """Checksums of tables on both sides as each one's data is in, `jobs` threads, while the copy goes on.

        measurer = PairMeasurer(src, tgt, method="columns", snapshot=snap, jobs=2, application_name=tag)
        measurer.submit("public.accounts")          # its rows are committed on the target: both sides
        measurer.submit("public.events", sides=("source",))
        src_tables, tgt_tables, errors = measurer.finish(all_names)   # the rest, then wait
        measurer.stop()                             # on failure: cancel the queries in flight

    The target's rows of a table do not change once its COPY committed (indexes, constraints and ANALYZE
    do not touch them), so its checksum may run at any moment after that: db.copy queues the target sides
    when the last table is in, for the linking phase, where one core is mostly idle (queued as each table
    landed they slowed the COPYs, which keep both cores busy). Source measures run under the copy's
    exported `snapshot`, so they describe exactly what was copied.
    """

    def __init__(self, source: Endpoint, target: Endpoint, *, method: str, snapshot: str | None,
                 jobs: int = 2, application_name: str = "runbook-bot-verify") -> None:
        self.eps = {"source": source, "target": target}
        self.snapshot = snapshot
        self.method = method
        self.application_name = application_name
        self.results: dict[str, dict[str, list[Any]]] = {"source": {}, "target": {}}
        self.errors: list[str] = []
        self._submitted: set[tuple[str, str]] = set()
        self._work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._cancelled = threading.Event()
        self._conns: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._worker, name=f"checksums-{i}", daemon=True)
                         for i in range(max(1, jobs))]
        for thread in self._threads:
            thread.start()

    def submit(self, name: str, sides: tuple[str, ...] = ("source", "target")) -> None:
        for side in sides:
            if (side, name) not in self._submitted:
                self._submitted.add((side, name))
                self._work.put((side, name))

    def finish(self, names: list[str], check_cancelled: Callable[[], None] = lambda: None
               ) -> tuple[dict[str, list[Any]], dict[str, list[Any]], list[str]]:
        """Measure whatever of `names` was not submitted yet, wait for everything, close the connections.
        `check_cancelled` is polled while waiting; when it raises, the queries in flight are cancelled."""
        for name in names:
            self.submit(name)
        for _ in self._threads:
            self._work.put(None)
        try:
            for thread in self._threads:
                while thread.is_alive():
                    check_cancelled()
                    thread.join(0.2)
        except BaseException:
            self.stop()
            raise
        return self.results["source"], self.results["target"], self.errors

    def stop(self) -> None:
        """Cancel the queries in flight and end the workers (the copy failed or was cancelled)."""
        self._cancelled.set()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.cancel()
                except psycopg.Error:
                    pass  # already closed
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def _open(self, side: str) -> psycopg.Connection:
        conn = _open(self.eps[side], self.snapshot if side == "source" else None,
                     application_name=self.application_name)
        # The measurer runs beside the copy, which keeps the cores busy already: parallel workers would
        # only add a fork and a cold catalog cache per query.
        conn.execute("SET max_parallel_workers_per_gather = 0")
        with self._lock:
            self._conns.append(conn)
        return conn

    def _worker(self) -> None:
        conns: dict[str, psycopg.Connection] = {}
        try:
            while True:
                task = self._work.get()
                if task is None or self._cancelled.is_set():
                    return
                side, name = task
                self._measure(conns, side, name)
        finally:
            for conn in conns.values():
                conn.close()

    def _measure(self, conns: dict[str, psycopg.Connection], side: str, name: str) -> None:
        try:
            conn = conns.get(side) or conns.setdefault(side, self._open(side))
            if side == "target":
                self.results[side][name] = stamped_checksum(conn, name, self.method)
            else:
                self.results[side][name] = list(table_checksum(conn, name, self.method))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            self.results[side][name] = [None, None]
            self._discard(conns, side)         # a snapshot transaction is aborted by the error
        except psycopg.Error as exc:
            if not self._cancelled.is_set():
                self.errors.append(f"{side} {name}: {str(exc).strip()}")
            self._discard(conns, side)

    def _discard(self, conns: dict[str, psycopg.Connection], side: str) -> None:
        conn = conns.pop(side, None)
        if conn is not None:
            conn.close()


def measure_meta(ep: Endpoint, sequences: list[str] | None = None) -> Measures:
    """Everything but the table checksums: sequences, extensions, large objects, the table list, marker."""
    with connect(ep, application_name="runbook-bot-verify") as conn:
        m = Measures()
        m.all_tables = list_tables(conn)
        names = sequences if sequences is not None else [r[0] for r in conn.execute(
            f"""SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'S' AND {_USER_REL} ORDER BY 1""").fetchall()]
        for name in names:
            if conn.execute("SELECT to_regclass(%s)", (qualified(*_split(name)),)).fetchone()[0] is None:
                continue
            last, called = conn.execute(f"SELECT last_value, is_called FROM {qualified(*_split(name))}").fetchone()
            m.sequences[name] = [last, called]
        m.extensions = dict(conn.execute(
            "SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql'").fetchall())
        m.large_objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
        m.marker = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{MARKER_TABLE}",)).fetchone()[0]
        return m


def measure(ep: Endpoint, tables: list[str] | None = None, *, jobs: int = 2, snapshot: str | None = None,
            sequences: list[str] | None = None, method: str = "columns") -> Measures:
    m = measure_meta(ep, sequences)
    m.tables = measure_tables(ep, tables if tables is not None else m.all_tables, jobs=jobs, snapshot=snapshot,
                              method=method)
    return m


def method_for(*majors: int) -> str:
    """`columns` when every server has hash_record_extended (14+), else `text`."""
    return "columns" if min(majors) >= 14 else "text"


def server_major(ep: Endpoint) -> int:
    with connect(ep, pin=False, application_name="runbook-bot-verify") as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def measure_both(source: Endpoint, target: Endpoint, tables: list[str] | None = None, *,
                 jobs: int = 2, method: str | None = None,
                 snapshots: tuple[str | None, str | None] = (None, None)) -> tuple[Measures, Measures]:
    """Both sides in parallel (each with `jobs` connections); `snapshots` (source's, target's) from
    :func:`held_snapshot` measure the tables as they were when those were taken."""
    src_meta = measure_meta(source)
    names = tables if tables is not None else src_meta.all_tables
    method = method or method_for(server_major(source), server_major(target))
    with ThreadPoolExecutor(max_workers=2) as pool:
        src_f = pool.submit(measure_tables, source, names, jobs=jobs, method=method, snapshot=snapshots[0])
        tgt_f = pool.submit(measure, target, names, jobs=jobs, sequences=list(src_meta.sequences), method=method,
                            snapshot=snapshots[1])
        src_meta.tables = src_f.result()
        return src_meta, tgt_f.result()


def compare(src: Measures, tgt: Measures, *, expect_no_extra_tables: bool = True) -> Report:
    """Every difference between the two sides, named by object and measure."""
    bad: list[Mismatch] = []
    if tgt.marker:
        bad.append(Mismatch("copy", f"public.{MARKER_TABLE}", "marker", "absent", "present (copy incomplete)"))
    rows_checked = 0
    for name, (rows, checksum) in sorted(src.tables.items()):
        got = tgt.tables.get(name)
        if got is None or got[0] is None:
            bad.append(Mismatch("table", name, "missing", f"{rows} rows", "no such table"))
            continue
        rows_checked += rows or 0
        if got[0] != rows:
            bad.append(Mismatch("table", name, "rows", str(rows), str(got[0])))
        elif got[1] != checksum:
            bad.append(Mismatch("table", name, "checksum", _short(checksum), _short(got[1])))
    if expect_no_extra_tables:
        for name in sorted(set(tgt.all_tables) - set(src.all_tables)):
            bad.append(Mismatch("table", name, "extra", "no such table", "present"))
    for name, value in sorted(src.sequences.items()):
        got = tgt.sequences.get(name)
        if got is None:
            bad.append(Mismatch("sequence", name, "missing", _seq(value), "no such sequence"))
        elif list(got) != list(value):
            bad.append(Mismatch("sequence", name, "last_value", _seq(value), _seq(got)))
    for ext, version in sorted(src.extensions.items()):
        if ext not in tgt.extensions:
            bad.append(Mismatch("extension", ext, "missing", version, "not installed"))
    if src.large_objects != tgt.large_objects:
        bad.append(Mismatch("large_objects", "pg_largeobject_metadata", "count",
                            str(src.large_objects), str(tgt.large_objects)))
    return Report(ok=not bad, mismatches=bad, tables_checked=len(src.tables), rows_checked=rows_checked,
                  sequences_checked=len(src.sequences))


def _short(checksum: Any) -> str:
    text = str(checksum)
    return text if len(text) <= 14 else f"…{text[-12:]}"


def _seq(value: list[Any]) -> str:
    last, called = value
    return f"{last}{'' if called else ' (not called)'}"
