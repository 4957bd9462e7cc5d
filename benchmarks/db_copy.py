"""db.copy with verification against the naive `pg_dump -Fc | pg_restore`, in the same run.

    python benchmarks/db_copy.py              # 1 GB of mixed tables (takes a few minutes)
    python benchmarks/db_copy.py --quick      # about 50 MB, under 30 s
    python benchmarks/db_copy.py --size 300   # MB

Needs the PostgreSQL server on 127.0.0.1:5432 (user postgres, trust) that the tests use. It creates a
source database of mixed tables (narrow pgbench-like rows, jsonb documents, bytea, numerics and
arrays), then copies it into fresh targets:

- naive: `pg_dump -Fc src | pg_restore -d tgt` (default compression, no verification): what a person
  types in a maintenance window;
- db.copy: the step kind's plan, apply and verify driven directly with a StepContext (auto strategy,
  row counts and checksums of every table on both sides, sequences, extensions, large objects);
- db.copy again with `verify: false`, to show what verification costs in all (part of it, the
  source-side checksums, runs inside apply while the target builds its indexes);
- pgcopydb `clone` (2 table jobs, 2 index jobs) when it is installed, for reference.

The last line is one JSON object: "ratio" = naive seconds / db.copy-with-verification seconds,
"target" 1.3, "pass" when the ratio meets it and verification took under 20% of the copy's time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bot.steps.context import StepContext  # noqa: E402
from bot.steps.db_copy import CopyInputs, DbCopy  # noqa: E402

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
TARGET_RATIO = 1.3
TARGET_VERIFY_SHARE = 0.20

# (table, share of the size, approximate bytes per row on disk, DDL, INSERT ... SELECT over g)
TABLES = [
    ("accounts", 0.40, 125,
     "CREATE TABLE accounts (aid bigint PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))",
     "INSERT INTO accounts SELECT g, g % 1000, ((g::bigint * 7919) % 100000 - 50000)::int, '' FROM generate_series({lo}, {hi}) g"),
    ("events", 0.30, 190,
     "CREATE TABLE events (id bigserial PRIMARY KEY, account bigint NOT NULL, payload jsonb NOT NULL, "
     "created timestamptz NOT NULL)",
     "INSERT INTO events (account, payload, created) SELECT g % 50000, jsonb_build_object('n', g, 'kind', "
     "'kind-' || (g % 17), 'tags', jsonb_build_array('a', g % 3, g % 5), 'ok', g % 2 = 0), "
     "timestamptz '2024-01-01 00:00+00' + g * interval '1 second' FROM generate_series({lo}, {hi}) g"),
    ("blobs", 0.20, 560,
     "CREATE TABLE blobs (id bigint PRIMARY KEY, data bytea NOT NULL)",
     "INSERT INTO blobs SELECT g, decode(repeat(md5(g::text) || md5((g + 1)::text), 8), 'hex') "
     "FROM generate_series({lo}, {hi}) g"),
    ("items", 0.10, 110,
     "CREATE TABLE items (id bigserial PRIMARY KEY, price numeric(12,2), qty int[], label text)",
     "INSERT INTO items (price, qty, label) SELECT (g % 100000) / 100.0, ARRAY[g % 7, g % 11], 'item ' || g "
     "FROM generate_series({lo}, {hi}) g"),
]


def conn(dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=HOST, port=PORT, user=USER, dbname=dbname, autocommit=True)


def create_db(prefix: str) -> str:
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
    with conn() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_db(name: str) -> None:
    with conn() as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def generate(dbname: str, size_mb: int) -> tuple[float, int]:
    started = time.monotonic()
    with conn(dbname) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS citext")
        for _, _, _, ddl, _ in TABLES:
            c.execute(ddl)
        c.execute("CREATE SEQUENCE invoice_no START 1000")
        c.execute("SELECT nextval('invoice_no') FROM generate_series(1, 42)")
        c.execute("SELECT lo_from_bytea(0, 'a large object')")

    jobs = []
    for _table, share, row_bytes, _, insert in TABLES:
        rows = max(1000, int(size_mb * 1e6 * share / row_bytes))
        step = max(1000, rows // 8)
        jobs += [insert.format(lo=lo, hi=min(rows, lo + step - 1)) for lo in range(1, rows + 1, step)]

    def run(statement: str) -> None:
        with conn(dbname) as c:
            c.execute(statement)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, jobs))
    with conn(dbname) as c:
        c.execute("VACUUM ANALYZE")
        data = c.execute("SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                         "c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'").fetchone()[0]
    return time.monotonic() - started, int(data)


def naive(src: str, tgt: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"PGHOST": HOST, "PGPORT": str(PORT), "PGUSER": USER})
    started = time.monotonic()
    dump = subprocess.Popen(["pg_dump", "-Fc", "-d", src], stdout=subprocess.PIPE, env=env)
    restore = subprocess.run(["pg_restore", "--no-owner", "--no-acl", "-d", tgt], stdin=dump.stdout, env=env,
                             capture_output=True, text=True)
    dump.stdout.close()
    dump.wait()
    seconds = time.monotonic() - started
    if dump.returncode or restore.returncode:
        raise SystemExit(f"naive pipe failed: {restore.stderr[-1000:]}")
    return seconds


def db_copy(src: str, tgt: str, verify: bool = True, strategy: str = "auto") -> dict:
    os.environ["BENCH_SRC_URL"] = f"postgresql://{USER}@{HOST}:{PORT}/{src}"
    os.environ["BENCH_TGT_URL"] = f"postgresql://{USER}@{HOST}:{PORT}/{tgt}"
    ctx = StepContext(run_id="bench", step_id="copy", runbook_name="benchmark", params={}, targets={}, outputs={})
    kind = DbCopy()
    inputs = CopyInputs(source="env:BENCH_SRC_URL", target="env:BENCH_TGT_URL", verify=verify, strategy=strategy)
    t0 = time.monotonic()
    plan = kind.plan(ctx, inputs)
    if plan.blocking:
        raise SystemExit(f"plan refused: {plan.blocking}")
    t1 = time.monotonic()
    result = kind.apply(ctx, inputs, plan)
    t2 = time.monotonic()
    check = kind.verify(ctx, inputs, result)
    t3 = time.monotonic()
    if verify and (check is None or not check.ok):
        raise SystemExit(f"verification failed: {check.summary if check else 'none'}")
    return {"plan_s": t1 - t0, "apply_s": t2 - t1, "verify_s": t3 - t2, "total_s": t3 - t0,
            "strategy": result.outputs["strategy"], "phases": result.details.get("phases"),
            "rows": result.outputs["rows"], "verify_summary": check.summary if check else ""}


def pgcopydb(src: str, tgt: str) -> float | None:
    tool = shutil.which("pgcopydb")
    if not tool:
        return None
    work = Path("/tmp") / f"bench-pgcopydb-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PGCOPYDB_SOURCE_PGURI=f"postgresql://{USER}@{HOST}:{PORT}/{src}",
               PGCOPYDB_TARGET_PGURI=f"postgresql://{USER}@{HOST}:{PORT}/{tgt}")
    started = time.monotonic()
    out = subprocess.run([tool, "clone", "--table-jobs", "2", "--index-jobs", "2", "--no-owner", "--no-acl",
                          "--dir", str(work)], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)
    if out.returncode:
        print(f"pgcopydb failed (exit {out.returncode}): {out.stderr[-500:]}", file=sys.stderr)
        return None
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="source size in MB of table data (default 1024)")
    parser.add_argument("--quick", action="store_true", help="about 50 MB")
    parser.add_argument("--no-pgcopydb", action="store_true")
    parser.add_argument("--strategy", default="auto", choices=["auto", "relay", "parallel", "stream", "pgcopydb"],
                        help="db.copy's strategy (default auto)")
    args = parser.parse_args()
    size = 50 if args.quick else args.size
    created: list[str] = []
    try:
        src = create_db("src")
        created.append(src)
        gen_s, data_bytes = generate(src, size)
        mb = data_bytes / 1e6
        print(f"source: {mb:.0f} MB of table data generated in {gen_s:.1f}s")

        tgt_naive = create_db("naive")
        created.append(tgt_naive)
        naive_s = naive(src, tgt_naive)
        print(f"naive pg_dump -Fc | pg_restore (no verification): {naive_s:.2f}s, {mb / naive_s:.1f} MB/s")
        drop_db(tgt_naive)

        tgt_ours = create_db("dbcopy")
        created.append(tgt_ours)
        ours = db_copy(src, tgt_ours, strategy=args.strategy)
        copy_s = ours["plan_s"] + ours["apply_s"]
        share = ours["verify_s"] / copy_s
        print(f"db.copy ({ours['strategy']}, phases {ours['phases']}): plan {ours['plan_s']:.2f}s + apply "
              f"{ours['apply_s']:.2f}s + verify {ours['verify_s']:.2f}s = {ours['total_s']:.2f}s, "
              f"{mb / ours['total_s']:.1f} MB/s with verification")
        print(f"verification: {ours['verify_summary']}")
        print(f"verify() share of the copy's time: {share:.1%} (the source side runs inside apply, "
              f"overlapped with the restore)")
        drop_db(tgt_ours)

        # The same copy without verification: what verification really costs, overlapped parts included.
        tgt_plain = create_db("plain")
        created.append(tgt_plain)
        plain = db_copy(src, tgt_plain, verify=False, strategy=args.strategy)
        drop_db(tgt_plain)
        marginal = ours["total_s"] - plain["total_s"]
        print(f"db.copy without verification: {plain['total_s']:.2f}s; verification's whole cost "
              f"(source checksums inside apply + verify()): {marginal:.2f}s = {marginal / plain['total_s']:.1%} "
              f"of the unverified copy")

        pgcopydb_s = None
        if not args.no_pgcopydb:
            tgt_pgc = create_db("pgcopydb")
            created.append(tgt_pgc)
            pgcopydb_s = pgcopydb(src, tgt_pgc)
            if pgcopydb_s is not None:
                print(f"pgcopydb clone (no verification): {pgcopydb_s:.2f}s, {mb / pgcopydb_s:.1f} MB/s")
            else:
                print("pgcopydb: not installed (apt-get install pgcopydb), skipped")
        ratio = naive_s / ours["total_s"]
        print(f"ratio naive / db.copy+verify: {ratio:.2f}x (target {TARGET_RATIO}x)")
        result = {
            "ratio": round(ratio, 3), "target": TARGET_RATIO,
            "pass": ratio >= TARGET_RATIO and share < TARGET_VERIFY_SHARE,
            "size_mb": round(mb, 1), "naive_s": round(naive_s, 2), "dbcopy_total_s": round(ours["total_s"], 2),
            "dbcopy_copy_s": round(copy_s, 2), "verify_s": round(ours["verify_s"], 2),
            "verify_share": round(share, 3), "verify_share_target": TARGET_VERIFY_SHARE,
            "strategy": ours["strategy"], "naive_mb_s": round(mb / naive_s, 1),
            "dbcopy_mb_s": round(mb / ours["total_s"], 1),
            "pgcopydb_s": round(pgcopydb_s, 2) if pgcopydb_s is not None else None,
            "dbcopy_unverified_s": round(plain["total_s"], 2),
            "verify_marginal_s": round(marginal, 2), "verify_marginal_share": round(marginal / plain["total_s"], 3),
        }
    finally:
        for name in created:
            drop_db(name)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
