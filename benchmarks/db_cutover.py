"""Write downtime of db.replicate's cutover against a dump-and-restore window, same data, same write load.

    python benchmarks/db_cutover.py --quick      # pgbench scale 2 (~30 MB), about a minute
    python benchmarks/db_cutover.py              # pgbench scale 60 (~1 GB): minutes, a loaded machine suffers
    python benchmarks/db_cutover.py --quick --source realistic   # issue 14's realistic source (~20 MB)

Starts a private PostgreSQL cluster with wal_level = logical (the tests' fixture, run as the
`postgres` OS user), fills a source with `pgbench -i`, and keeps a steady write load on it (one
client inserting into pgbench_history as fast as the server takes it). Then, for each method, the
"window" is what the writer sees: from its last successful write on the source to its first on the new
database.

- dump and restore: the writer stops (maintenance on), `pg_dump -Fd -j2` to disk, `pg_restore -j2`
  into a fresh database, the writer moves to it (maintenance off);
- db.replicate: start (schema + initial copy, writes flowing), wait until caught up, then the
  cutover step (fence, lag to zero, sequences, snapshots, reverse replication, open); the writer
  moves at the open (as `switch:` moves the app), and the checksums on the fence's snapshots run after.

`--source realistic` uses benchmarks/_realistic_source.py (the db_copy benchmark's source: partitions,
TOAST, a keyless pgbench_history, a materialized view, large objects, grants, ...; ~1 GB, or ~20 MB with
--quick) instead of `pgbench -i`; the start step then approves REPLICA IDENTITY FULL on pgbench_history
and `large_objects: true`, as an operator would.

Rows written to the source before each window are counted on the new side (none may be lost), and the
cutover's own comparison at the fence is reported ("at_fence"): a cutover whose verification fails is
undone by the engine, so it is no pass.
The last line is one JSON object: "ratio" = dump window / cutover window, "target" 10, and "pass" when
the ratio is at least 10 and the cutover window under 5 s. With --quick the dataset is too small for a
dump-and-restore to take long, so "pass" is null (the ratio is reported, not judged).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from benchmarks._realistic_source import generate  # noqa: E402
from bot.steps.context import StepContext  # noqa: E402
from bot.steps.db_replicate import ReplicateCutover, ReplicateStart, ReplicateStop  # noqa: E402
from tests.fixtures.pg_logical import LogicalCluster, reap_stale_clusters, start_cluster, stop_cluster  # noqa: E402


class Writer(threading.Thread):
    """One app connection inserting rows; `move_to` switches its database (the DATABASE_URL switch)."""

    def __init__(self, cluster: LogicalCluster, db: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.db = cluster, db
        self.stop_flag = threading.Event()
        self.paused = threading.Event()
        self.log: list[tuple[float, str]] = []     # (time, database) of every successful write
        self.lock = threading.Lock()

    def move_to(self, db: str) -> None:
        with self.lock:
            self.db = db

    def run(self) -> None:
        conn, conn_db = None, None
        while not self.stop_flag.is_set():
            if self.paused.is_set():
                time.sleep(0.005)
                continue
            with self.lock:
                db = self.db
            try:
                if conn is None or conn_db != db:
                    conn = psycopg.connect(host="127.0.0.1", port=self.cluster.port, user="postgres", dbname=db,
                                           autocommit=True)
                    conn_db = db
                conn.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                             "VALUES (1, 1, 1, 1, clock_timestamp())")
                self.log.append((time.time(), db))
            except psycopg.Error:
                conn = None
                time.sleep(0.005)
            time.sleep(0.002)

    def window(self, old: str, new: str) -> float:
        last_old = max(t for t, d in self.log if d == old)
        first_new = min(t for t, d in self.log if d == new)
        return first_new - last_old

    def written_to(self, db: str) -> int:
        return sum(1 for _t, d in self.log if d == db)


def pgbench_init(cluster: LogicalCluster, db: str, scale: int) -> None:
    subprocess.run(_as_pg([str(cluster.bindir / "pgbench"), "-i", "-q", "-s", str(scale), "-h", "127.0.0.1",
                           "-p", str(cluster.port), "-U", "postgres", db]), check=True, capture_output=True)
    # pgbench_history has no key: give it one so UPDATE/DELETE could replicate (and the preflight passes).
    cluster.sql(db, "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY")


def realistic_init(cluster: LogicalCluster, db: str, size_mb: int) -> None:
    generate(db, size_mb, "127.0.0.1", cluster.port, "postgres")


def _as_pg(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def dump_restore_window(cluster: LogicalCluster, src: str, writer: Writer) -> tuple[float, int, int]:
    tgt = cluster.create("bench_dump")
    folder = Path(tempfile.mkdtemp(prefix="rbt-cutover-dump-"))
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    bindir = cluster.bindir
    time.sleep(1.0)
    writer.paused.set()                                   # maintenance on
    try:
        subprocess.run([str(bindir / "pg_dump"), "-Fd", "-j2", "-f", str(folder / "dump"), src], env=env,
                       check=True, capture_output=True)
        subprocess.run([str(bindir / "pg_restore"), "-j2", "--no-owner", "--exit-on-error", "-d", tgt,
                        str(folder / "dump")], env=env, check=True, capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    before = writer.written_to(src)
    writer.move_to(tgt)
    writer.paused.clear()                                 # maintenance off
    time.sleep(1.0)
    carried = cluster.sql(tgt, "SELECT count(*) FROM pgbench_history")[0][0]
    return writer.window(src, tgt), before, carried


def cutover_window(cluster: LogicalCluster, src: str, writer: Writer, realistic: bool,
                   base: int) -> tuple[float, float, int, int, dict]:
    """`base`: the history rows the source held before the writer started (the realistic source has some)."""
    tgt = cluster.create("bench_repl")
    os.environ["BENCH_SRC_URL"], os.environ["BENCH_TGT_URL"] = cluster.url(src), cluster.url(tgt)
    sides = {"source": "env:BENCH_SRC_URL", "target": "env:BENCH_TGT_URL"}

    def ctx(step: str) -> StepContext:
        return StepContext(run_id="bench", step_id=step, runbook_name="bench", params={}, targets={}, outputs={})

    start = ReplicateStart()
    # The realistic source's keyless history and its large objects are refused until approved.
    s_in = start.Inputs(**sides, **({"replica_identity_full": ["public.pgbench_history"], "large_objects": True}
                                    if realistic else {}))
    start.apply(ctx("replicate"), s_in, start.plan(ctx("replicate"), s_in))
    time.sleep(1.0)                                       # streaming under the write load
    cut = ReplicateCutover()
    c_in = cut.Inputs(**sides, replication="replicate")

    def on_progress(**report) -> None:
        # The app's DATABASE_URL switch at the open (what `switch:` does on a platform); the checksums
        # on the fence's snapshots run after it, outside the window.
        if report["message"].startswith("writes open"):
            writer.move_to(tgt)

    cut_ctx = StepContext(run_id="bench", step_id="cutover", runbook_name="bench", params={}, targets={},
                          outputs={}, on_progress=on_progress)
    result = cut.apply(cut_ctx, c_in, cut.plan(cut_ctx, c_in))
    writer.move_to(tgt)                                   # (already there)
    time.sleep(1.0)
    before = writer.written_to(src)
    # Count the target while no write is in flight: the writer keeps writing there, and a row landing
    # between the count and reading its log showed as "1 row lost".
    writer.paused.set()
    while True:
        time.sleep(0.05)
        on_tgt = writer.written_to(tgt)
        count = cluster.sql(tgt, "SELECT count(*) FROM pgbench_history")[0][0]
        if writer.written_to(tgt) == on_tgt:
            break
    writer.paused.clear()
    carried = count - on_tgt - base
    stop = ReplicateStop()
    st_in = stop.Inputs(**sides, replication="replicate")
    stop.apply(ctx("stop"), st_in, stop.plan(ctx("stop"), st_in))
    cluster.sql(src, f'ALTER DATABASE "{src}" RESET default_transaction_read_only')
    print(f"cutover phases (s): {result.details['phases']}", flush=True)
    return (writer.window(src, tgt), result.outputs["write_downtime_seconds"], before, carried,
            result.details["at_fence"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pgbench scale 2 instead of 60 (realistic: 20 MB)")
    parser.add_argument("--source", choices=("pgbench", "realistic"), default="pgbench")
    args = parser.parse_args()
    realistic = args.source == "realistic"
    scale = 2 if args.quick else 60
    reap_stale_clusters()
    folder = Path(tempfile.mkdtemp(prefix="rbt-pglogical-"))
    (folder / "owner.pid").write_text(str(os.getpid()))
    cluster = start_cluster(folder)
    try:
        load = os.getloadavg()[0]
        results = {}
        for method in ("dump", "replicate"):
            src = cluster.create("bench_src")
            if realistic:
                realistic_init(cluster, src, 20 if args.quick else 1024)
            else:
                pgbench_init(cluster, src, scale)
            base = cluster.sql(src, "SELECT count(*) FROM pgbench_history")[0][0]
            writer = Writer(cluster, src)
            writer.start()
            try:
                if method == "dump":
                    window, before, carried = dump_restore_window(cluster, src, writer)
                    results["dump"] = {"window_s": round(window, 3), "source_rows": before}
                else:
                    window, step_s, before, carried, at_fence = cutover_window(cluster, src, writer, realistic, base)
                    results["replicate"] = {"window_s": round(window, 3), "step_downtime_s": step_s,
                                            "source_rows": before, "at_fence": at_fence}
            finally:
                writer.stop_flag.set()
                writer.join(10)
            results[method]["rows_lost"] = before - carried if method == "replicate" else None
            print(f"{method}: window {window:.2f} s (writes on the source before it: {before})", flush=True)
        ratio = results["dump"]["window_s"] / max(1e-3, results["replicate"]["window_s"])
        ok = (ratio >= 10 and results["replicate"]["window_s"] < 5 and results["replicate"]["rows_lost"] == 0
              and bool((results["replicate"]["at_fence"] or {}).get("ok")))
        print(json.dumps({"benchmark": "db_cutover", "source": args.source,
                          **({} if realistic else {"scale": scale}), "quick": args.quick,
                          "load_1m": round(load, 2), **results, "ratio": round(ratio, 2), "target": 10,
                          "pass": None if args.quick else ok}))
    finally:
        cluster.drop_created()
        stop_cluster(cluster)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
