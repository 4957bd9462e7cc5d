"""Facts about both databases, gathered read-only and in parallel, for the db.copy plan.

    source, target = gather(src_ep, tgt_ep)           # two DbFacts (queries only, nothing written)
    source.tables[0].size, target.is_empty, target.objects

Everything here is a SELECT. The plan's judgement (what blocks, what warns) lives in
`bot.steps.db_copy`; this module only measures.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from bot.platforms.postgres.connect import Endpoint, connect

MARKER_TABLE = "_runbook_bot_copy_incomplete"

# Rough throughput of table data (MB/s) per strategy, measured on a 2-vCPU host with both servers
# local (notes/db-copy.md): an order of magnitude for the ETA, not a promise. Across a network the
# link dominates; the ETA says so.
RATE_MB_S = {"relay": 45.0, "parallel": 35.0, "stream": 25.0, "pgcopydb": 45.0}
VERIFY_RATE_MB_S = 150.0

_USER_SCHEMAS = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
_NOT_EXTENSION_MEMBER = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {cat}::regclass "
                         "AND d.objid = {oid} AND d.deptype = 'e')")


@dataclass
class TableInfo:
    schema: str
    name: str
    size: int           # pg_table_size: heap + TOAST, what the data copy moves
    total_size: int     # with indexes
    est_rows: int

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class DbFacts:
    server_version: str
    major: int
    current_user: str
    database: str
    database_size: int
    extensions: dict[str, str]              # installed, plpgsql left out
    available_extensions: list[str]
    schemas: list[str]                      # user schemas
    tables: list[TableInfo]
    sequences: list[str]
    large_objects: int
    roles: list[str]                        # every role name on the server
    owners: list[str]                       # roles owning objects in user schemas
    objects: dict[str, int]                 # per user schema: how many objects (relations, functions, types)
    max_connections: int
    reserved_connections: int
    connections_in_use: int
    datconnlimit: int
    rolconnlimit: int
    is_superuser: bool
    can_create_schema: bool
    marker: str | None                      # text of an unfinished copy's marker, if any
    heroku_ext: bool = False
    progress_copy_view: bool = False        # pg_stat_progress_copy exists (14+)
    # default_toast_compression (14+): [setting, where it was set (pg_settings.source), the values offered]
    toast_compression: list[Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return (not any(self.objects.values()) and not self.extensions and self.large_objects == 0
                and set(self.schemas) <= {"public"} and self.marker is None)

    @property
    def free_connections(self) -> int:
        free = self.max_connections - self.reserved_connections - self.connections_in_use
        if self.datconnlimit >= 0:
            free = min(free, self.datconnlimit)
        if self.rolconnlimit >= 0:
            free = min(free, self.rolconnlimit)
        return free

    @property
    def data_size(self) -> int:
        return sum(t.size for t in self.tables)

    def to_dict(self) -> dict:
        return asdict(self)


def facts(ep: Endpoint) -> DbFacts:
    """Measure one database (read-only)."""
    with connect(ep, application_name="runbook-bot-preflight") as conn:
        one = lambda sql, *a: conn.execute(sql, a or None).fetchone()[0]  # noqa: E731
        version_num = int(one("SHOW server_version_num"))
        rel_not_ext = _NOT_EXTENSION_MEMBER.format(cat="'pg_class'", oid="c.oid")
        tables = [TableInfo(*row) for row in conn.execute(
            f"""SELECT n.nspname, c.relname, pg_table_size(c.oid), pg_total_relation_size(c.oid),
                       greatest(c.reltuples, 0)::bigint
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND {_USER_SCHEMAS} AND {rel_not_ext} AND c.relname <> %s
                ORDER BY pg_table_size(c.oid) DESC, 1, 2""", (MARKER_TABLE,)).fetchall()]
        sequences = [r[0] for r in conn.execute(
            f"""SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'S' AND {_USER_SCHEMAS} AND {rel_not_ext} ORDER BY 1""").fetchall()]
        schemas = [r[0] for r in conn.execute(
            f"SELECT n.nspname FROM pg_namespace n WHERE {_USER_SCHEMAS} AND "
            + _NOT_EXTENSION_MEMBER.format(cat="'pg_namespace'", oid="n.oid") + " ORDER BY 1").fetchall()]
        objects = {s: 0 for s in schemas}
        for schema, count in conn.execute(
            f"""SELECT n.nspname, count(*) FROM (
                    SELECT c.relnamespace AS ns FROM pg_class c WHERE {rel_not_ext} AND c.relname <> %s
                    UNION ALL SELECT p.pronamespace FROM pg_proc p
                      WHERE {_NOT_EXTENSION_MEMBER.format(cat="'pg_proc'", oid="p.oid")}
                    UNION ALL SELECT t.typnamespace FROM pg_type t
                      WHERE t.typrelid = 0 AND t.typelem = 0 AND t.typtype IN ('c','d','e','r','m','b')
                        AND {_NOT_EXTENSION_MEMBER.format(cat="'pg_type'", oid="t.oid")}
                ) o JOIN pg_namespace n ON n.oid = o.ns WHERE {_USER_SCHEMAS} GROUP BY 1""",
                (MARKER_TABLE,)).fetchall():
            objects[schema] = count
        owners = [r[0] for r in conn.execute(
            f"""SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE {_USER_SCHEMAS} ORDER BY 1""").fetchall()]
        marker = None
        if one("SELECT to_regclass(%s) IS NOT NULL", f"public.{MARKER_TABLE}"):
            row = conn.execute(f'SELECT note FROM public."{MARKER_TABLE}" LIMIT 1').fetchone()
            marker = row[0] if row else "an unfinished copy"
        role = conn.execute("SELECT rolconnlimit, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        return DbFacts(
            server_version=one("SHOW server_version"),
            major=version_num // 10000,
            current_user=one("SELECT current_user"),
            database=one("SELECT current_database()"),
            database_size=one("SELECT pg_database_size(current_database())"),
            extensions=dict(conn.execute(
                "SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1").fetchall()),
            available_extensions=[r[0] for r in conn.execute(
                "SELECT name FROM pg_available_extensions ORDER BY 1").fetchall()],
            schemas=schemas,
            tables=tables,
            sequences=sequences,
            large_objects=one("SELECT count(*) FROM pg_largeobject_metadata"),
            roles=[r[0] for r in conn.execute("SELECT rolname FROM pg_roles ORDER BY 1").fetchall()],
            owners=owners,
            objects=objects,
            max_connections=int(one("SHOW max_connections")),
            reserved_connections=int(one("SHOW superuser_reserved_connections")),
            connections_in_use=one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"),
            datconnlimit=one("SELECT datconnlimit FROM pg_database WHERE datname = current_database()"),
            rolconnlimit=role[0] if role else -1,
            is_superuser=bool(role[1]) if role else False,
            can_create_schema=one("SELECT has_database_privilege(current_database(), 'CREATE')"),
            marker=marker,
            heroku_ext="heroku_ext" in schemas,
            progress_copy_view=version_num >= 140000,
            toast_compression=_toast_compression(conn) if version_num >= 140000 else None,
        )


def _toast_compression(conn: psycopg.Connection) -> list[Any] | None:
    row = conn.execute("SELECT setting, source, enumvals FROM pg_settings "
                       "WHERE name = 'default_toast_compression'").fetchone()
    return [row[0], row[1], list(row[2] or [])] if row else None


def gather(source: Endpoint, target: Endpoint) -> tuple[DbFacts, DbFacts]:
    """Both sides at once."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        src = pool.submit(facts, source)
        tgt = pool.submit(facts, target)
        return src.result(), tgt.result()


def free_disk(path: str) -> int:
    return shutil.disk_usage(path).free


def estimated_dump_size(tables: list[TableInfo]) -> int:
    """An uncompressed directory dump is about the size of the table data; keep a margin for TOAST
    values that are compressed in the heap but written out whole."""
    return int(sum(t.size for t in tables) * 1.3) + 16 * 1024 * 1024


def eta_seconds(strategy: str, data_bytes: int, verify: bool) -> float:
    mb = data_bytes / 1e6
    seconds = mb / RATE_MB_S[strategy] + 2.0
    if verify:
        seconds += mb / VERIFY_RATE_MB_S
    return seconds


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    s = int(round(s))
    if s < 90:
        return f"{s}s"
    if s < 5400:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
