"""The realistic source database of issue 14, at any size, for benchmarks/db_copy.py (and its test).

    from benchmarks._realistic_source import generate, GRANTS
    seconds, data_bytes = generate("bench_src_1234", 50, "127.0.0.1", 5432, "postgres")
    CopyInputs(..., grants=GRANTS)        # what an operator passes to carry the source's grants

What it builds (the things a dump-and-restore or a verification gets wrong), shares of the bytes in
brackets:

- pgbench's four tables with pgbench's foreign keys: `pgbench_accounts` [35%] (plus a CHECK),
  `pgbench_branches`, `pgbench_tellers`, and `pgbench_history` [10%] with NO primary key, like pgbench's;
- schema `app` (USAGE granted to `bench_reader` and `bench_writer`):
  - `app.events` [30%]: range-partitioned by month (6 partitions and a default), a `bigserial` id, a
    jsonb payload with a CHECK on it, a foreign key to `pgbench_accounts`;
  - `app.documents` [20%]: TOASTed values of several kB, a compressible text (pglz shrinks it) and an
    incompressible bytea (sha512 chains), an identity column (GENERATED ALWAYS), a `digest()` column
    (pgcrypto) generated from the bytea;
  - `app.customers`: an identity column (BY DEFAULT), a `citext` e-mail with a UNIQUE index, a CHECK;
  - `app.account_audit`: a `bigserial` table filled by a plpgsql trigger on `pgbench_accounts`
    (some accounts are updated after the load, so it has rows and its sequence moved);
  - `app.branch_totals`: a populated materialized view with a unique index;
  - `app.invoice_no`: a standalone sequence, advanced;
- table and sequence grants to `bench_reader`/`bench_writer` (roles created IF NOT EXISTS: they are
  cluster-wide, so nothing here ever drops them), and a few large objects.

Rows are filled with `INSERT ... SELECT generate_series` in 2 parallel connections into tables that have
no index yet, then keys, indexes and foreign keys are added (as `pgbench -i` does), then VACUUM ANALYZE.
Everything is deterministic (no random(); explicit ids even for serial and identity columns, so two
parallel inserts cannot interleave nextval differently), so two sources of one size hold the same rows.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

ROLES = ("bench_reader", "bench_writer")

# What an operator copying with --no-acl passes as `grants:` to carry the source's grants over. The
# generator runs exactly these on the source, so source and target can be compared ACL by ACL.
GRANTS = [
    "GRANT USAGE ON SCHEMA app TO bench_reader, bench_writer",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_reader",
    "GRANT SELECT ON ALL TABLES IN SCHEMA app TO bench_reader",
    "GRANT SELECT, INSERT, UPDATE ON public.pgbench_accounts, public.pgbench_tellers, public.pgbench_branches "
    "TO bench_writer",
    "GRANT SELECT, INSERT ON public.pgbench_history, app.events, app.customers TO bench_writer",
    "GRANT USAGE, SELECT ON SEQUENCE app.events_id_seq, app.invoice_no TO bench_writer",
]

# name, share of the bytes, approximate bytes per row on disk (heap + TOAST, measured at 50 MB)
SHARES = {
    "accounts": (0.35, 135),
    "events": (0.30, 218),
    "documents": (0.20, 6050),
    "history": (0.10, 85),
}
BRANCH_ROWS_PER_ACCOUNT = 100_000      # pgbench: 1 branch, 10 tellers per 100 000 accounts
MONTHS = 6                             # events span 2024-01 .. 2024-06, one partition each

_CREATE_ROLES = " ".join(f"IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r}; END IF;"
                         for r in ROLES)
SCHEMA = f"""
DO $$ BEGIN {_CREATE_ROLES} END $$;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA app;

CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int NOT NULL, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int NOT NULL, tbalance int NOT NULL, filler char(84));
CREATE TABLE pgbench_accounts (aid bigint NOT NULL, bid int NOT NULL, abalance int NOT NULL, filler char(84),
                               CONSTRAINT accounts_bid_positive CHECK (bid > 0));
CREATE TABLE pgbench_history (tid int, bid int, aid bigint, delta int, mtime timestamp, filler char(22));

CREATE TABLE app.events (id bigserial NOT NULL, account bigint NOT NULL, created timestamptz NOT NULL,
                         payload jsonb NOT NULL, CONSTRAINT events_payload_has_kind CHECK (payload ? 'kind'))
    PARTITION BY RANGE (created);
{"".join(f"CREATE TABLE app.events_2024_{m:02d} PARTITION OF app.events FOR VALUES FROM ('2024-{m:02d}-01 00:00+00') "
         f"TO ('{2024 + m // 12}-{m % 12 + 1:02d}-01 00:00+00');" for m in range(1, MONTHS + 1))}
CREATE TABLE app.events_default PARTITION OF app.events DEFAULT;

CREATE TABLE app.documents (id int GENERATED ALWAYS AS IDENTITY, title text NOT NULL, body text NOT NULL,
                            raw bytea NOT NULL, raw_sha256 bytea GENERATED ALWAYS AS (digest(raw, 'sha256')) STORED,
                            CONSTRAINT documents_raw_not_empty CHECK (octet_length(raw) > 0));
CREATE TABLE app.customers (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, email citext NOT NULL,
                            name text NOT NULL, since date NOT NULL DEFAULT current_date,
                            CONSTRAINT customers_email_has_at CHECK (email LIKE '%@%'));
CREATE TABLE app.account_audit (id bigserial PRIMARY KEY, aid bigint NOT NULL, old_balance int, new_balance int,
                                at timestamptz NOT NULL DEFAULT '2024-07-01 00:00+00');
CREATE SEQUENCE app.invoice_no START 1000;
"""

# After the load: keys and indexes (two connections), then foreign keys (one: each locks both tables).
INDEXES = [
    "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)",
    "ALTER TABLE app.events ADD PRIMARY KEY (id, created)",
    "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid)",
    "ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid)",
    "ALTER TABLE app.documents ADD PRIMARY KEY (id)",
    "CREATE INDEX events_account_idx ON app.events (account)",
    "CREATE UNIQUE INDEX customers_email_key ON app.customers (email)",
    "CREATE INDEX history_aid_idx ON pgbench_history (aid)",
]
FOREIGN_KEYS = [
    "ALTER TABLE pgbench_tellers ADD FOREIGN KEY (bid) REFERENCES pgbench_branches",
    "ALTER TABLE pgbench_accounts ADD FOREIGN KEY (bid) REFERENCES pgbench_branches",
    "ALTER TABLE pgbench_history ADD FOREIGN KEY (bid) REFERENCES pgbench_branches",
    "ALTER TABLE pgbench_history ADD FOREIGN KEY (tid) REFERENCES pgbench_tellers",
    "ALTER TABLE pgbench_history ADD FOREIGN KEY (aid) REFERENCES pgbench_accounts",
    "ALTER TABLE app.events ADD CONSTRAINT events_account_fkey FOREIGN KEY (account) REFERENCES pgbench_accounts",
]

FINISH = """
CREATE FUNCTION app.audit_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.abalance IS DISTINCT FROM OLD.abalance THEN
    INSERT INTO app.account_audit (aid, old_balance, new_balance) VALUES (OLD.aid, OLD.abalance, NEW.abalance);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER accounts_audit AFTER UPDATE OF abalance ON pgbench_accounts
    FOR EACH ROW EXECUTE FUNCTION app.audit_balance();
-- One account at a time in aid order: the audit ids then follow aid whatever the heap order (the load ran
-- in two connections, so a scan's order is not fixed).
DO $$ BEGIN
  FOR a IN 1..{audited} LOOP UPDATE pgbench_accounts SET abalance = abalance + a % 97 WHERE aid = a; END LOOP;
END $$;
CREATE MATERIALIZED VIEW app.branch_totals AS
    SELECT bid, count(*) AS accounts, sum(abalance) AS balance FROM pgbench_accounts GROUP BY bid;
CREATE UNIQUE INDEX branch_totals_bid ON app.branch_totals (bid);
SELECT setval('app.events_id_seq', {events});
SELECT nextval('app.invoice_no') FROM generate_series(1, 42);
SELECT lo_from_bytea(0, convert_to('large object ' || g || ' ' || repeat(md5(g::text), 64 * g), 'UTF8'))
    FROM generate_series(1, 5) g ORDER BY g;
"""


def _rows(size_mb: float) -> dict[str, int]:
    """Rows per table for a size: each of the four big tables its share of the bytes."""
    rows = {name: max(50, int(size_mb * 1e6 * share / row_bytes)) for name, (share, row_bytes) in SHARES.items()}
    rows["branches"] = max(1, -(-rows["accounts"] // BRANCH_ROWS_PER_ACCOUNT))      # rounded up
    rows["tellers"] = rows["branches"] * 10
    rows["customers"] = max(100, rows["accounts"] // 100)
    return rows


def _fills(rows: dict[str, int]) -> list[str]:
    """INSERT ... SELECT statements, each big table in 8 ranges so two connections share the work."""
    n_acc, n_tel, n_ev = rows["accounts"], rows["tellers"], rows["events"]
    span = MONTHS * 30 * 86400 - 1          # seconds the events spread over: every partition gets rows
    templates = {
        "branches": "INSERT INTO pgbench_branches SELECT g, 0, '' FROM generate_series({lo}, {hi}) g",
        "tellers": "INSERT INTO pgbench_tellers SELECT g, (g - 1) / 10 + 1, 0, '' FROM generate_series({lo}, {hi}) g",
        "accounts": f"INSERT INTO pgbench_accounts SELECT g, (g - 1) / {BRANCH_ROWS_PER_ACCOUNT} + 1, 0, '' "
                    "FROM generate_series({lo}, {hi}) g",
        "history": f"INSERT INTO pgbench_history SELECT g % {n_tel} + 1, (g % {n_tel}) / 10 + 1, g % {n_acc} + 1, "
                   "(g::bigint * 7919) % 10001 - 5000, timestamp '2024-01-01' + g * interval '1 second', '' "
                   "FROM generate_series({lo}, {hi}) g",
        "events": f"INSERT INTO app.events (id, account, created, payload) SELECT g, (g * 31) % {n_acc} + 1, "
                  f"timestamptz '2024-01-01 00:00+00' + ((g::bigint * {span}) / {n_ev}) * interval '1 second', "
                  "jsonb_build_object('kind', 'kind-' || (g % 17), 'n', g, 'ok', g % 2 = 0, "
                  "'tags', jsonb_build_array('a', g % 3, g % 5), 'note', 'event ' || md5(g::text)) "
                  "FROM generate_series({lo}, {hi}) g",
        # body: ~6 kB of text that repeats every 256 characters (pglz takes it to a few hundred bytes);
        # raw: 4 kB of sha512 output, which no compressor shrinks, so it is stored out of line in TOAST.
        "documents": "INSERT INTO app.documents (id, title, body, raw) OVERRIDING SYSTEM VALUE SELECT g, "
                     "'document ' || g, repeat((SELECT string_agg(md5((g + i)::text), '' ORDER BY i) "
                     "FROM generate_series(0, 7) i), 24), "
                     "(SELECT string_agg(digest(g || ':' || i, 'sha512'), ''::bytea ORDER BY i) "
                     "FROM generate_series(1, 64) i) FROM generate_series({lo}, {hi}) g",
        "customers": "INSERT INTO app.customers (id, email, name, since) SELECT g, 'Customer' || g || '@Example.COM', "
                     "'customer ' || g, date '2020-01-01' + g % 1500 FROM generate_series({lo}, {hi}) g",
    }
    statements = []
    for table, template in templates.items():
        count = rows[table]
        step = max(1000, -(-count // 8))
        statements += [template.format(lo=lo, hi=min(count, lo + step - 1)) for lo in range(1, count + 1, step)]
    return statements


def generate(dbname: str, size_mb: float, host: str, port: int, user: str) -> tuple[float, int]:
    """Fill the (empty, existing) database `dbname` with about `size_mb` MB of table data.

    Returns (seconds taken, bytes of table data: heap and TOAST of every user table and partition).
    """
    started = time.monotonic()

    def conn() -> psycopg.Connection:
        return psycopg.connect(host=host, port=port, user=user, dbname=dbname, autocommit=True)

    def run(statement: str) -> None:
        with conn() as c:
            c.execute(statement)

    rows = _rows(size_mb)
    with conn() as c:
        c.execute(SCHEMA)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, _fills(rows)))
        list(pool.map(run, INDEXES))
    with conn() as c:
        for statement in FOREIGN_KEYS:
            c.execute(statement)
        c.execute(FINISH.format(audited=min(500, rows["accounts"]), events=rows["events"]))
        c.execute("SELECT setval(pg_get_serial_sequence('app.documents', 'id'), %s)", (rows["documents"],))
        c.execute("SELECT setval(pg_get_serial_sequence('app.customers', 'id'), %s)", (rows["customers"],))
        for statement in GRANTS:
            c.execute(statement)
        c.execute("VACUUM ANALYZE")
        data = c.execute(
            "SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname IN ('public', 'app')").fetchone()[0]
    return time.monotonic() - started, int(data)


def table_sizes(dbname: str, host: str, port: int, user: str) -> dict[str, int]:
    """Bytes (heap + TOAST) per top-level table, partitions summed into their parent: to check the shares."""
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as c:
        return dict(c.execute("""
            SELECT coalesce(p.relname, c.relname), sum(pg_table_size(c.oid))::bigint FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
            WHERE c.relkind IN ('r', 'm') AND n.nspname IN ('public', 'app') GROUP BY 1 ORDER BY 2 DESC""").fetchall())
