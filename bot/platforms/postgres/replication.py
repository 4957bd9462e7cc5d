"""PostgreSQL logical replication for a cutover: publication, slot, subscription, lag, fence, sequences.

    names = Names.for_run("r1", "replicate")           # runbook_bot_<hash>: publication, slot and subscription
    facts = source_facts(src)                          # wal_level, privilege, tables without a key, ...
    copy_schema(src, tgt)                              # pg_dump --schema-only | psql (no data)
    start(src, tgt, names)                             # publication + slot on src, subscription on tgt
    publish(src, name); with exported_slot(src, name) as (lsn, snapshot): ...   # slot + its snapshot
    subscribe(src, tgt, name, copy_data=False)         # after a copy made under that snapshot
    lag(src, tgt, names)                               # Lag(bytes=..., seconds=..., rows=..., synced=...)
    fence(src)                                         # no new writes on the source (read-only + kick sessions)
    wait_marker(src, tgt, names, timeout)              # every commit before the fence is applied on tgt
    stop(src, tgt, names)                              # subscription, slot, publication and marker gone

Why the bot creates the slot itself (`pg_create_logical_replication_slot`, or `exported_slot` when the
initial copy runs under the slot's snapshot) and subscribes with
`create_slot = false`: CREATE SUBSCRIPTION creating its slot waits for every running transaction on
the publisher, including its own when both are in one cluster (documented; it hangs), and a slot the
bot made is one it knows the name and LSN of, so cleanup can always find it.

Why a marker row decides "lag is zero": after the fence the bot writes one row into
`public._runbook_bot_cutover` on the source (its own session overrides the read-only fence) and waits
until the row is on the target. Apply is in commit order, so the row's arrival proves every earlier
commit arrived. `confirmed_flush_lsn` only moves when the subscriber reports (every
`wal_receiver_status_interval`, 10 s by default), which would add seconds to the write downtime.

Why the fence is `ALTER DATABASE ... SET default_transaction_read_only = on` plus terminating the
database's other sessions: it needs no app platform, applies to every new session, and logical
replication's apply workers ignore it, so the reverse subscription can still write to a fenced source.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg import pq, sql

from bot import secrets
from bot.platforms.postgres import tools
from bot.platforms.postgres.connect import DatabaseError, Endpoint, connect, qualified, quote_ident

PREFIX = "runbook_bot_"
MARKER = "_runbook_bot_cutover"


def _open(ep: Endpoint, application_name: str) -> Any:
    """A bot session that may write on a fenced database (the fence is a default, not a lock)."""
    conn = connect(ep, application_name=application_name)
    conn.execute("SET default_transaction_read_only = off")
    return conn


class ReplicationError(Exception):
    """A replication operation failed; the message names the side and the server's words."""


@dataclass(frozen=True)
class Names:
    """The objects of one replication: `base` for source -> target, `reverse` for target -> source."""

    base: str

    @classmethod
    def for_run(cls, run_id: str, step_id: str) -> Names:
        digest = hashlib.sha256(f"{run_id}/{step_id}".encode()).hexdigest()[:12]
        return cls(f"{PREFIX}{digest}")

    @property
    def reverse(self) -> str:
        return f"{self.base}_rev"


@dataclass
class SourceFacts:
    wal_level: str
    can_replicate: bool
    user: str
    server_version: str
    free_slots: int
    no_identity: list[str] = field(default_factory=list)    # tables logical replication cannot UPDATE/DELETE
    sequences: list[str] = field(default_factory=list)
    large_objects: int = 0
    heroku_ext: bool = False                                  # Heroku Postgres keeps extensions there
    leftover_slots: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HEROKU_HINTS = ("heroku", "compute-1.amazonaws.com")


def allows_no_replication_out(ep: Endpoint, facts: SourceFacts) -> bool:
    """Heroku Postgres grants no REPLICATION and no slots (heroku/roadmap#38). Known from where the
    URL came from (a Heroku app's DATABASE_URL), the host, or Heroku's own `heroku_ext` schema."""
    return facts.heroku_ext or any(h in (ep.label + " " + ep.host).lower() for h in HEROKU_HINTS)


def source_facts(ep: Endpoint) -> SourceFacts:
    """Everything preflight needs from the source, read-only."""
    with _open(ep, "runbook-bot-replicate") as conn:
        one = conn.execute("""
            SELECT current_setting('wal_level'), r.rolsuper OR r.rolreplication, current_user,
                   current_setting('server_version'),
                   current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)
            FROM pg_roles r WHERE r.rolname = current_user""").fetchone()
        no_identity = [r[0] for r in conn.execute("""
            SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_' AND c.relname <> %s
              AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (
                    SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
            ORDER BY 1""", (MARKER,)).fetchall()]
        sequences = [r[0] for r in conn.execute(
            "SELECT schemaname || '.' || sequencename FROM pg_sequences ORDER BY 1").fetchall()]
        large_objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
        heroku_ext = bool(conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'heroku_ext'").fetchone())
        return SourceFacts(wal_level=one[0], can_replicate=bool(one[1]), user=one[2], server_version=one[3],
                           free_slots=int(one[4]), no_identity=no_identity, sequences=sequences,
                           large_objects=int(large_objects), heroku_ext=heroku_ext,
                           leftover_slots=leftover_slots(ep, conn=conn))


def leftover_slots(ep: Endpoint, *, conn: Any = None) -> list[dict[str, Any]]:
    """Replication slots a runbook-bot made on this server (any database), with the WAL each holds back."""
    query = """
        SELECT slot_name, database, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
        FROM pg_replication_slots WHERE slot_name LIKE %s ORDER BY 1"""
    def read(c: Any) -> list[dict[str, Any]]:
        return [{"slot": r[0], "database": r[1], "active": bool(r[2]), "retained_bytes": int(r[3] or 0)}
                for r in c.execute(query, (PREFIX.replace("_", r"\_") + "%",)).fetchall()]
    if conn is not None:
        return read(conn)
    with _open(ep, "runbook-bot-replicate") as own:
        return read(own)


def leftover_subscriptions(ep: Endpoint) -> list[str]:
    """Subscriptions a runbook-bot made in this database (a killed bot leaves them streaming)."""
    with _open(ep, "runbook-bot-replicate") as conn:
        return [r[0] for r in conn.execute(
            "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
            "WHERE d.datname = current_database() AND subname LIKE %s ORDER BY 1",
            (PREFIX.replace("_", r"\_") + "%",)).fetchall()]


def set_replica_identity_full(ep: Endpoint, tables: list[str]) -> None:
    """`ALTER TABLE ... REPLICA IDENTITY FULL` for tables without a key (UPDATE/DELETE then replicate)."""
    with connect(ep, autocommit=False, application_name="runbook-bot-replicate") as conn:
        for name in tables:
            schema, _, table = name.partition(".")
            conn.execute(f"ALTER TABLE {qualified(schema, table)} REPLICA IDENTITY FULL")
        conn.commit()


def copy_schema(src: Endpoint, tgt: Endpoint) -> None:
    """The source's schema (no data, no owners, ACLs, publications or subscriptions) onto the target."""
    major = _major(src)
    try:
        dump, _restore = tools.find_pair(major)
    except tools.ToolMissing as exc:
        raise ReplicationError(str(exc)) from None
    psql = tools.find_psql(dump)
    if psql is None:
        raise ReplicationError(f"psql not found beside {dump.path}: {tools.install_hint(major)}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    reader = subprocess.Popen([dump.path, "--schema-only", "--no-owner", "--no-acl", "--no-publications",
                               "--no-subscriptions"], env={**base, **src.libpq_env()},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = subprocess.run([psql.path, "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=reader.stdout,
                            env={**base, **tgt.libpq_env()}, capture_output=True, text=True)
    reader.stdout.close()
    dump_err = reader.stderr.read().decode(errors="replace")
    reader.wait()
    # The writer's error first: a reader dying of SIGPIPE is the consequence, not the cause.
    if writer.returncode != 0:
        raise ReplicationError(f"schema restore on the target failed: {writer.stderr.strip()[-500:]}")
    if reader.returncode != 0:
        raise ReplicationError(f"pg_dump --schema-only on the source failed: {dump_err.strip()[-500:]}")


def _major(ep: Endpoint) -> int:
    with connect(ep, pin=False, application_name="runbook-bot-replicate") as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def ensure_marker(ep: Endpoint) -> None:
    with _open(ep, "runbook-bot-replicate") as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS public.{MARKER} (token text PRIMARY KEY, "
                     f"at timestamptz NOT NULL DEFAULT clock_timestamp())")


def publish(publisher: Endpoint, name: str) -> None:
    """`CREATE PUBLICATION name FOR ALL TABLES` unless it exists (made before the slot: see exported_slot)."""
    with _open(publisher, "runbook-bot-replicate") as conn:
        if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone():
            conn.execute(f"CREATE PUBLICATION {quote_ident(name)} FOR ALL TABLES")


def subscribe(publisher: Endpoint, subscriber: Endpoint, name: str, *, copy_data: bool) -> None:
    """`CREATE SUBSCRIPTION` on `subscriber` for the slot and publication `name` (both made by the bot)."""
    with _open(subscriber, "runbook-bot-replicate") as conn:
        if not conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,)).fetchone():
            # The connection string is stored in the subscriber's catalog (PostgreSQL needs it to connect).
            conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH "
                                 "(create_slot = false, slot_name = {}, copy_data = {}, enabled = true)").format(
                sql.Identifier(name), sql.Literal(publisher.conninfo(application_name=name)),
                sql.Identifier(name), sql.Literal(name), sql.Literal(copy_data)))


def start(publisher: Endpoint, subscriber: Endpoint, name: str, *, copy_data: bool) -> str:
    """Publication and slot on `publisher`, subscription on `subscriber`; returns the slot's LSN."""
    publish(publisher, name)
    with _open(publisher, "runbook-bot-replicate") as conn:
        row = conn.execute("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s",
                           (name,)).fetchone()
        lsn = row[0] if row else conn.execute(
            "SELECT lsn FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (name,)).fetchone()[0]
    subscribe(publisher, subscriber, name, copy_data=copy_data)
    return str(lsn)


_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


@contextmanager
def exported_slot(ep: Endpoint, name: str) -> Iterator[tuple[str, str]]:
    """A logical slot made through a replication connection that EXPORTS its snapshot, held open.

        publish(src, name)                           # first: pgoutput reads it through the slot's snapshot
        with exported_slot(src, name) as (lsn, snapshot):
            copy.run(CopyRequest(..., snapshot=snapshot))   # the data exactly as of `lsn`
        subscribe(src, tgt, name, copy_data=False)   # streams every commit after `lsn`

    The snapshot lives only while this connection stays open and idle (the server forgets it at
    the connection's next command), so it is held for the whole block and closed after it. If the
    block raises, the slot is dropped: a failed copy leaves nothing on the source that holds WAL.
    A killed bot leaves the slot (it is persistent, so the subscription can use it); the next plan
    lists it as a leftover. psycopg 3 has no replication protocol in its high-level API: the
    low-level `pq.PGconn` speaks the simple query protocol the walsender needs."""
    if not _SLOT_NAME.match(name):
        raise ReplicationError(f"replication slot name {name!r}: only a-z, 0-9 and _ (at most 63)")
    # `replication=database`: a walsender bound to this database (pg_hba matches the database name).
    info = ep.conninfo(replication="database", application_name=name, connect_timeout=10)
    pgconn = pq.PGconn.connect(info.encode())
    try:
        if pgconn.status != pq.ConnStatus.OK:
            raise ReplicationError(f"replication connection to {ep.display()} failed: {_pq_error(pgconn)}")
        res = pgconn.exec_(f"CREATE_REPLICATION_SLOT {name} LOGICAL pgoutput EXPORT_SNAPSHOT".encode())
        if res.status != pq.ExecStatus.TUPLES_OK:
            raise ReplicationError(f"creating replication slot {name} on {ep.display()} failed: "
                                   f"{_pq_error(pgconn, res)}")
        columns = {res.fname(i).decode(): i for i in range(res.nfields)}
        lsn = res.get_value(0, columns["consistent_point"]).decode()
        snapshot = res.get_value(0, columns["snapshot_name"]).decode()
    except BaseException:
        pgconn.finish()
        raise
    try:
        yield lsn, snapshot
    except BaseException as exc:
        pgconn.finish()  # the walsender ends; the slot is free to drop
        try:
            drop_slot_by_name(ep, name)
        except (ReplicationError, DatabaseError) as drop_exc:
            raise ReplicationError(f"{exc}; and the replication slot {name} on {ep.display()} could not be "
                                   f"dropped ({drop_exc}): SELECT pg_drop_replication_slot('{name}') there, "
                                   f"it holds WAL") from exc
        raise
    finally:
        pgconn.finish()  # idempotent


def _pq_error(pgconn: Any, res: Any = None) -> str:
    raw = (res.error_message if res is not None and res.error_message else pgconn.error_message) or b""
    return secrets.redact(raw.decode(errors="replace").strip().splitlines()[0] if raw.strip() else "no message")


def stop(publisher: Endpoint, subscriber: Endpoint | None, name: str) -> list[str]:
    """Drop the subscription (on `subscriber`), then the slot and publication (on `publisher`); says what went."""
    gone: list[str] = []
    if subscriber is not None:
        with _open(subscriber, "runbook-bot-replicate") as conn:
            if conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,)).fetchone():
                ident = quote_ident(name)
                conn.execute(f"ALTER SUBSCRIPTION {ident} DISABLE")
                conn.execute(f"ALTER SUBSCRIPTION {ident} SET (slot_name = NONE)")
                conn.execute(f"DROP SUBSCRIPTION {ident}")
                gone.append(f"subscription {name} on {subscriber.display()}")
    with _open(publisher, "runbook-bot-replicate") as conn:
        if drop_slot(conn, name):
            gone.append(f"replication slot {name} on {publisher.display()}")
        if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone():
            conn.execute(f"DROP PUBLICATION {quote_ident(name)}")
            gone.append(f"publication {name} on {publisher.display()}")
    return gone


def drop_slot(conn: Any, name: str, *, wait: float = 15.0) -> bool:
    """Drop a slot, ending the walsender that holds it (a disabled subscription's sender lingers briefly)."""
    deadline = time.monotonic() + wait
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
        if row is None:
            return False
        if row[0] is not None:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            return True
        except DatabaseError as exc:
            if time.monotonic() > deadline:
                raise ReplicationError(f"replication slot {name} could not be dropped: {exc}") from None
            time.sleep(0.2)


def drop_slot_by_name(ep: Endpoint, name: str) -> bool:
    with _open(ep, "runbook-bot-replicate") as conn:
        return drop_slot(conn, name)


@dataclass
class Lag:
    bytes: int | None          # WAL the subscriber has not confirmed
    seconds: float | None      # replay lag reported by the walsender (0 when caught up and idle)
    rows: int                  # rows inserted/updated/deleted on the subscriber so far (statistics)
    synced: int                # tables in state ready
    tables: int                # tables in the subscription
    active: bool               # a walsender is streaming the slot

    @property
    def initial_copy_done(self) -> bool:
        return self.tables > 0 and self.synced == self.tables

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lag(publisher: Endpoint, subscriber: Endpoint, name: str) -> Lag:
    with _open(publisher, "runbook-bot-replicate") as conn:
        row = conn.execute("""
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, s.active,
                   (SELECT extract(epoch FROM coalesce(r.replay_lag, interval '0'))::float8
                    FROM pg_stat_replication r WHERE r.pid = s.active_pid)
            FROM pg_replication_slots s WHERE s.slot_name = %s""", (name,)).fetchone()
    with _open(subscriber, "runbook-bot-replicate") as conn:
        states = dict(conn.execute("""
            SELECT r.srsubstate::text, count(*) FROM pg_subscription_rel r
            JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = %s GROUP BY 1""", (name,)).fetchall())
        rows = conn.execute("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint "
                            "FROM pg_stat_user_tables").fetchone()[0]
    if row is None:
        raise ReplicationError(f"replication slot {name} is missing on {publisher.display()}")
    return Lag(bytes=int(row[0]) if row[0] is not None else None, seconds=row[2], rows=int(rows),
               synced=int(states.get("r", 0)), tables=int(sum(states.values())), active=bool(row[1]))


def subscription_errors(subscriber: Endpoint, name: str) -> dict[str, int]:
    """How often the subscription's workers failed (`pg_stat_subscription_stats`, 15+; {} when absent).

    A worker that fails (a key conflict, a publication its slot cannot see) restarts and fails again;
    the server log has the words, this says that it happens."""
    with _open(subscriber, "runbook-bot-replicate") as conn:
        if not conn.execute("SELECT to_regclass('pg_catalog.pg_stat_subscription_stats')").fetchone()[0]:
            return {}
        row = conn.execute("SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats "
                           "WHERE subname = %s", (name,)).fetchone()
    return {"apply": int(row[0]), "sync": int(row[1])} if row else {}


def fence(ep: Endpoint, *, spare: tuple[str, ...] = ()) -> int:
    """Stop new writes: the database defaults to read-only and its sessions (not walsenders) are ended.

    Returns how many sessions were ended. `spare` names application_names to leave alone."""
    with _open(ep, "runbook-bot-fence") as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(ep.dbname)))
        ended = conn.execute("""
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
              AND NOT (application_name = ANY(%s))""", (list(spare),)).fetchone()[0]
    return int(ended)


def unfence(ep: Endpoint) -> None:
    with _open(ep, "runbook-bot-fence") as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
            sql.Identifier(ep.dbname)))


def is_fenced(ep: Endpoint) -> bool:
    """True when the database's own setting makes new sessions read-only (what `fence` set)."""
    with _open(ep, "runbook-bot-fence") as conn:
        return bool(conn.execute("""
            SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                           WHERE d.datname = current_database() AND s.setrole = 0
                             AND 'default_transaction_read_only=on' = ANY (s.setconfig))""").fetchone()[0])


def last_commit(ep: Endpoint) -> float | None:
    """Epoch of the server's last committed transaction (needs track_commit_timestamp), else None."""
    with _open(ep, "runbook-bot-replicate") as conn:
        try:
            row = conn.execute("SELECT extract(epoch FROM (pg_last_committed_xact()).timestamp)::float8").fetchone()
        except DatabaseError:
            return None
    return row[0] if row else None


def wait_marker(publisher: Endpoint, subscriber: Endpoint, *, timeout: float, sleep: Any = time.sleep) -> float:
    """Write a token on the publisher and wait until the subscriber has it; returns the seconds it took."""
    token = hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:16]
    began = time.monotonic()
    with _open(publisher, "runbook-bot-fence") as conn:
        conn.execute(f"INSERT INTO public.{MARKER} (token) VALUES (%s)", (token,))
    with _open(subscriber, "runbook-bot-fence") as conn:
        while not conn.execute(f"SELECT 1 FROM public.{MARKER} WHERE token = %s", (token,)).fetchone():
            if time.monotonic() - began > timeout:
                raise ReplicationError(f"the subscriber {subscriber.display()} did not catch up within "
                                       f"{timeout:.0f} s (marker {token} not applied)")
            sleep(0.02)
    return time.monotonic() - began


def sequences(ep: Endpoint) -> dict[str, list[Any]]:
    with _open(ep, "runbook-bot-replicate") as conn:
        return {r[0]: [r[1], r[2]] for r in conn.execute("""
            SELECT schemaname || '.' || sequencename, last_value, last_value IS NOT NULL
            FROM pg_sequences ORDER BY 1""").fetchall()}


def copy_sequences(src: Endpoint, tgt: Endpoint) -> dict[str, list[Any]]:
    """Set every target sequence to the source's value (logical replication does not carry them)."""
    values = sequences(src)
    with _open(tgt, "runbook-bot-replicate") as conn:
        for name, (last, called) in values.items():
            if last is None:
                continue
            schema, _, seq = name.partition(".")
            conn.execute("SELECT setval(%s::regclass, %s, %s)", (qualified(schema, seq), last, called))
    return values


def drop_marker(ep: Endpoint) -> None:
    with _open(ep, "runbook-bot-replicate") as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.{MARKER}")


LO_CHUNK = 1 << 20


def large_object_count(ep: Endpoint) -> int:
    """How many large objects `ep`'s database holds (pg_largeobject_metadata is readable by every role)."""
    with _open(ep, "runbook-bot-replicate") as conn:
        return int(conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0])


def copy_large_objects(src: Endpoint, tgt: Endpoint) -> int:
    """Copy each large object the target lacks, OID kept, in chunks, in one target transaction (all or
    none); logical replication does not carry them. Run while both sides are still (inside the window).
    Returns how many were copied.

        copied = copy_large_objects(old_ep, new_ep)    # the target's lo_open(oid) now finds each one
    """
    with _open(src, "runbook-bot-replicate") as source, _open(tgt, "runbook-bot-replicate") as target:
        have = {r[0] for r in target.execute("SELECT oid FROM pg_largeobject_metadata").fetchall()}
        wanted = [r[0] for r in source.execute("SELECT oid FROM pg_largeobject_metadata ORDER BY oid").fetchall()
                  if r[0] not in have]
        try:
            with source.transaction(), target.transaction():
                for oid in wanted:
                    target.execute("SELECT lo_create(%s)", (oid,))
                    offset = 0
                    while True:
                        chunk = source.execute("SELECT lo_get(%s, %s, %s)", (oid, offset, LO_CHUNK)).fetchone()[0]
                        if chunk:
                            target.execute("SELECT lo_put(%s, %s, %s)", (oid, offset, chunk))
                        if len(chunk or b"") < LO_CHUNK:
                            break
                        offset += LO_CHUNK
        except DatabaseError as exc:
            raise ReplicationError(f"copying large objects {src.display()} -> {tgt.display()} failed: "
                                   f"{str(exc).strip()} (none was copied)") from None
        return len(wanted)


def refresh_matviews(src: Endpoint, tgt: Endpoint) -> list[str]:
    """REFRESH on the target each materialized view the source has populated (a schema-only copy creates
    them WITH NO DATA, and logical replication does not carry them). Dependency order: a view reading
    another is refreshed after it (pg_dump's order, by OID, is the order they were made in)."""
    with _open(src, "runbook-bot-replicate") as conn:
        populated = [r[0] for r in conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'm' AND c.relispopulated ORDER BY c.oid").fetchall()]
    done = []
    with _open(tgt, "runbook-bot-replicate") as conn:
        for name in populated:
            schema, _, view = name.partition(".")
            try:
                conn.execute(f"REFRESH MATERIALIZED VIEW {qualified(schema, view)}")
            except DatabaseError as exc:
                raise ReplicationError(f"REFRESH MATERIALIZED VIEW {name} on {tgt.display()}: "
                                       f"{str(exc).strip()}") from None
            done.append(name)
    return done
