"""Copy one PostgreSQL database into another with the standard tools, observably and stoppably.

    outcome = run(CopyRequest(source=src, target=tgt, strategy="parallel", jobs=2, tables=facts.tables,
                              workdir="/var/tmp", dump=dump, restore=restore),
                  progress=lambda done, total, msg: ..., check_cancelled=ctx.check_cancelled)

Strategies (the step picks one; the operator may override):

- `relay` (the default): the schema with `pg_dump --section=pre-data | pg_restore`; then N tables at
  a time, each `psql COPY ... TO STDOUT | psql COPY ... FROM STDIN` under the exported snapshot, no
  file in between; large objects through a data-only `pg_dump -b | pg_restore`. A pipeline per table,
  pgcopydb's schedule: as soon as a big table's rows commit, its own primary key, unique constraints
  and indexes are built (`pg_restore -L` of its items from the post-data archive, see `post_data`) and
  it is ANALYZEd, while the next tables copy; the caller's `on_table_loaded` may checksum it too. A
  foreign key into such a table is built as soon as its referencing rows are in (one at a time; a
  partitioned table's per leaf partition, see `post_data.EarlyLink`); a small table without an
  expression index is ANALYZEd as it lands. Last, the items that link objects (the other foreign keys,
  triggers, partition ATTACHes, materialized view data) with `pg_restore -j N`. Reading the source and
  writing the target overlap, it needs no disk, and each table is loaded with `TRUNCATE; COPY ...
  FREEZE` in one transaction, so the target's rows are born frozen (no hint-bit rewrite on first
  read, no anti-wraparound vacuum of a freshly copied database). Binary COPY when both majors are
  equal, text otherwise.

- `parallel`: `pg_dump -Fd -j N -Z0` into a temporary folder, then `pg_restore -j N`. `-j` works only
  with the directory format and `pg_restore -j` needs a file, not a pipe (pgcopydb's design notes),
  so parallelism costs local disk about the size of the table data. `-Z0`: compressing a dump that
  is read back seconds later on the same host only burns the CPU the restore needs.
- `stream`: `pg_dump -Fc -Z0 | pg_restore`: no disk, one COPY at a time. Chosen when disk is short.
- `pgcopydb`: `pgcopydb clone` streams each table with its own COPY workers and builds indexes in
  parallel; used when installed (Debian's 0.10 supports PostgreSQL 10 to 15).

Always `--no-owner --no-acl` (the source's roles rarely exist on the target: grants come afterwards,
as the runbook says) and `--exit-on-error` (a restore that "ignored 6 errors" is a failed copy).
`pg_dump` gets `--snapshot` when the caller exported one, so the copy and the source-side
verification see the same instant. `toast_compression` (the caller decides, see db.copy's plan) reaches
every process that writes to the target as `PGOPTIONS=-c default_toast_compression=...`: a logical copy
recompresses every TOASTed value with the writing session's default.

Progress: `pg_restore -v` names items as they finish (`finished item 3438 TABLE DATA a`), matched
against `pg_restore -l`; the in-flight table's share comes from `pg_stat_progress_copy`
(tuples_processed against the source's row estimate; PostgreSQL 14+).

Cancel: `check_cancelled()` is polled every 0.2 s; when it raises, every child's process group gets
SIGTERM (then SIGKILL), the target's backends still serving them are terminated, and the exception
propagates. Death of the bot (kill -9): each child has a death signal, a watchdog process kills their
process groups with the workers `pg_restore -j` forked (`reaper.Watchdog`), and every session checks
that its client is still there (`client_connection_check_interval`, 14+), so the server abandons the
index build or key validation it was running within a second and nothing commits.

Child processes get the connections through `PG*` environment variables, so no password is ever on a
command line.
"""

from __future__ import annotations

import collections
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg

from bot import secrets
from bot.platforms.postgres import post_data
from bot.platforms.postgres.connect import Endpoint, client_check, connect
from bot.platforms.postgres.preflight import TableInfo
from bot.platforms.postgres.reaper import PROCESS_GROUPS, Watchdog
from bot.platforms.postgres.tools import Tool

STRATEGIES = ("relay", "parallel", "stream", "pgcopydb")
_FINISHED = re.compile(r"finished item (\d+) TABLE DATA")
_PROCESSING = re.compile(r'processing data for table "([^"]+)"')
_LIST_DATA = re.compile(r"^(\d+); \d+ \d+ TABLE DATA (\S+) (\S+) ")


class CopyFailed(Exception):
    """A child process failed; the message holds its last lines of output (secrets masked)."""


@dataclass
class CopyRequest:
    source: Endpoint
    target: Endpoint
    strategy: str
    jobs: int
    tables: list[TableInfo]                 # what will be copied (sizes and row estimates for progress)
    workdir: str
    dump: Tool
    restore: Tool
    pgcopydb: Tool | None = None
    psql: Tool | None = None
    same_major: bool = True
    snapshot: str | None = None
    only_tables: list[str] | None = None    # the runbook's `tables` filter, schema-qualified
    on_table_loaded: Callable[[str], None] | None = None   # relay: a table's rows are committed on the target
    # relay: tables this big get their own post-data batch as soon as their rows are in; smaller ones wait
    # for the final `pg_restore -j` (a pg_restore per tiny table would cost more than it overlaps)
    early_index_bytes: int = 16 * 1048576
    # relay only. False: leave the source's publications and subscriptions out (db.replicate's copy:
    # its own publication exists on the source by then and must not appear on the target).
    replication_objects: bool = True
    # the target's default_toast_compression for every process that writes there (None: the target's own)
    toast_compression: str | None = None
    # the servers' majors, when known: on 14+ children's sessions check that their client is still there
    source_major: int = 0
    target_major: int = 0
    tag: str = field(default_factory=lambda: f"runbook-bot-copy-{uuid.uuid4().hex[:8]}")


@dataclass
class CopyOutcome:
    strategy: str
    seconds: dict[str, float] = field(default_factory=dict)
    tables_done: int = 0
    items: int = 0
    analysed: bool = False       # relay ANALYZEs as it goes; the caller analyses after the other strategies
    early_links: int = 0         # relay: foreign keys built in the pipeline (post_data.EarlyLink)


_ROW_DATA = re.compile(r'(COPY [^,]+, line \d+(?:, column [^:]+)?: )".*"?$|(Key \(.*?\)=)\(.*?\)')


def _without_row_data(line: str) -> str:
    """Error lines may quote a row (`CONTEXT: COPY t, line 5: "alice@example.com ..."`) or a key value:
    the operator needs the table and the line, not the customer's data in a Slack thread."""
    return _ROW_DATA.sub(lambda m: (m.group(1) + '"…"') if m.group(1) else (m.group(2) + "(…)"), line)


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the bot dies (a kill -9 must not leave psql pairs committing).

    Linux delivers it when the *thread* that forked exits, so children are started from the thread that
    waits for them (the step's apply), never from a short-lived helper."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Children:
    """Child processes in their own process groups, their stderr read by threads, stoppable at once;
    `close()` when they are done (it stands down the watchdog that kills them all if the bot dies)."""

    def __init__(self, on_line: Callable[[str, str], None], folder: str | None = None) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tails: dict[str, collections.deque[str]] = {}
        self.on_line = on_line
        self._threads: list[threading.Thread] = []
        # Each child's process group, written down in the scratch folder before it can do anything: what
        # the next start reaps if something of ours outlived a killed bot (see `reaper.leftover_processes`)...
        self._groups = os.path.join(folder, PROCESS_GROUPS) if folder else None
        # ...and told to the watchdog, which kills the groups, their workers included, the moment we die.
        self._watchdog = Watchdog.start()

    def start(self, name: str, argv: list[str], env: dict[str, str], *, stdin: Any = None,
              stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=die_with_parent)
        if self._groups:
            with open(self._groups, "a") as out:
                out.write(f"{proc.pid}\n")
        self._watchdog.add(proc.pid)
        self.procs[name] = proc
        self.tails[name] = collections.deque(maxlen=40)
        thread = threading.Thread(target=self._read, args=(name, proc.stderr), daemon=True)
        thread.start()
        self._threads.append(thread)
        return proc

    def _read(self, name: str, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tails[name].append(line)
            self.on_line(name, line)

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs.values())

    def wait_readers(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)

    def check(self) -> None:
        """Raise CopyFailed naming the child that failed first in cause: a reader killed by SIGPIPE only
        says its writer went away, so a failed writer (with the server's error) is named before it."""
        failed = [p for p in self.procs.values() if p.returncode not in (0, None)]
        if failed and all(p.returncode == -signal.SIGPIPE for p in failed):
            deadline = time.monotonic() + 3.0          # the writer that broke the pipe is exiting too
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        self.wait_readers()
        ordered = sorted(self.procs.items(), key=lambda item: item[1].returncode == -signal.SIGPIPE)
        for name, proc in ordered:
            if proc.returncode not in (0, None):
                tail = "\n".join(_without_row_data(line) for line in self.tails[name] if line.strip())[-1500:]
                raise CopyFailed(secrets.redact(f"{name} exited with status {proc.returncode}:\n{tail}"))

    def stop(self, grace: float = 5.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass  # already gone
        end = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def close(self) -> None:
        self._watchdog.close()


class Tracker:
    """Turns tool output and pg_stat_progress_copy into one fraction and a message."""

    def __init__(self, tables: list[TableInfo], weights: dict[str, float]) -> None:
        self.size = {t.qualified: max(t.size, 8192) for t in tables}
        self.rows = {t.qualified: t.est_rows for t in tables}
        self.total = sum(self.size.values()) or 1
        self.weights = weights            # phase -> share of the whole
        self.done: dict[str, set[str]] = {p: set() for p in weights}
        self.inflight: dict[str, dict[str, float]] = {p: {} for p in weights}
        self.items: dict[str, str] = {}   # pg_restore -l item id -> schema.table
        self.phase = next(iter(weights))
        self.lock = threading.Lock()

    def finish(self, phase: str, table: str) -> None:
        with self.lock:
            self.done[phase].add(table)
            self.inflight[phase].pop(table, None)

    def copying(self, phase: str, rows: dict[str, int]) -> None:
        with self.lock:
            self.inflight[phase] = {t: min(0.99, n / self.rows[t]) for t, n in rows.items()
                                    if t in self.rows and self.rows[t] > 0 and t not in self.done[phase]}

    def fraction(self) -> float:
        with self.lock:
            value = 0.0
            for phase, weight in self.weights.items():
                done = sum(self.size.get(t, 0) for t in self.done[phase])
                part = sum(self.size[t] * f for t, f in self.inflight[phase].items())
                value += weight * min(1.0, (done + part) / self.total)
            return value

    def message(self) -> str:
        if self.phase == "indexes":
            return "indexes, constraints and triggers"
        with self.lock:
            done = len(self.done[self.phase])
            busy = sorted(self.inflight[self.phase], key=lambda t: -self.size.get(t, 0))[:2]
        text = f"{self.phase}: {done}/{len(self.size)} tables"
        if busy:
            text += ", copying " + ", ".join(busy)
        return text


def _env(ep: Endpoint, tag: str, extra: dict[str, str] | None = None, *, major: int = 0) -> dict[str, str]:
    """A child's environment for `ep`: its libpq variables, the copy's tag as application_name and, on
    14+ (`major`), `client_connection_check_interval`, so a server statement of a child that died with
    the bot (an index build, a key's validation) stops within a second instead of running to its end
    and committing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(ep.libpq_env())
    env["PGAPPNAME"] = tag
    env.update(extra or {})
    for name, value in client_check(major * 10000).items():
        _add_option(env, f"{name}={value}")
    return env


def _add_option(env: dict[str, str], setting: str) -> None:
    """Append `-c setting` to PGOPTIONS, after whatever options the endpoint carries."""
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + f" -c {setting}").strip()


def _source_env(req: CopyRequest) -> dict[str, str]:
    return _env(req.source, req.tag, major=req.source_major)


def _target_env(req: CopyRequest, extra: dict[str, str] | None = None, *, major: int | None = None) -> dict[str, str]:
    """The environment of a process that writes to the target: `_env` plus the request's TOAST compression."""
    env = _env(req.target, req.tag, extra, major=req.target_major if major is None else major)
    if req.toast_compression:
        _add_option(env, f"default_toast_compression={req.toast_compression}")
    return env


def _table_args(only: list[str] | None) -> list[str]:
    args: list[str] = []
    for name in only or []:
        schema, _, table = name.partition(".")
        args += ["-t", f'"{schema}"."{table}"']
    return args


def phase_of(message: str) -> str:
    """The progress phase a strategy's message belongs to: `schema`, `indexes`, `analyse` or `data`.

        progress=lambda fraction, message: ctx.progress(..., message, phase=phase_of(message))
    """
    return next((p for p in ("schema", "indexes", "analyse") if message.startswith(p)), "data")


def run(req: CopyRequest, *, progress: Callable[[float, str], None], check_cancelled: Callable[[], None],
        on_source_released: Callable[[], None] = lambda: None) -> CopyOutcome:
    """Run the chosen strategy to the end, or stop everything it started and re-raise."""
    runner = {"relay": _relay, "parallel": _parallel, "stream": _stream, "pgcopydb": _pgcopydb}[req.strategy]
    return runner(req, progress, check_cancelled, on_source_released)


class _Monitor:
    """pg_stat_progress_copy on one side, polled from the main loop."""

    SQL = """SELECT n.nspname || '.' || c.relname, p.tuples_processed
             FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE p.datname = current_database()"""

    def __init__(self, ep: Endpoint) -> None:
        self.conn: psycopg.Connection | None = None
        try:
            self.conn = connect(ep, application_name="runbook-bot-progress")
            major = int(self.conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        except psycopg.Error:
            major = 0
        if major < 14 and self.conn is not None:
            self.conn.close()
            self.conn = None  # no pg_stat_progress_copy before 14: finished items only

    def rows(self) -> dict[str, int]:
        if self.conn is None:
            return {}
        return dict(self.conn.execute(self.SQL).fetchall())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _loop(req: CopyRequest, children: Children, tracker: Tracker, progress: Callable[[float, str], None],
          check_cancelled: Callable[[], None], monitors: dict[str, _Monitor], phase_of: Callable[[], str]) -> None:
    """Wait for the children, polling cancel (0.2 s) and progress (0.5 s)."""
    last = 0.0
    while children.running():
        check_cancelled()
        now = time.monotonic()
        if now - last >= 0.5:
            last = now
            phase = phase_of()
            monitor = monitors.get(phase)
            if monitor is not None:
                tracker.copying(phase, monitor.rows())
            progress(tracker.fraction(), tracker.message())
        time.sleep(0.2)
    for proc in children.procs.values():
        proc.wait()
    children.check()


def _guarded(req: CopyRequest, children: Children, body: Callable[[], CopyOutcome], *,
             monitors: dict[str, Any] | None = None, folder: Any = None) -> CopyOutcome:
    """Run `body`; on any way out but success, stop the children and the target's backends serving them.
    Always close the progress monitors and remove the strategy's scratch folder."""
    finished = False
    try:
        outcome = body()
        finished = True
        return outcome
    finally:
        if not finished:
            children.stop()
            terminate_backends(req.target, req.tag)
        children.close()
        for monitor in (monitors or {}).values():
            monitor.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


SCRATCH_PREFIX = "runbook-bot-"
SCRATCH_KINDS = ("dump", "pgcopydb", "relay")


def scratch_folder(kind: str, workdir: str) -> str:
    """A strategy's scratch folder, stamped with this process's PID so a later run can tell it was abandoned."""
    folder = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{kind}-", dir=workdir)
    with open(os.path.join(folder, "owner.pid"), "w") as out:
        out.write(str(os.getpid()))
    return folder




def stale_scratch(workdir: str) -> list[tuple[str, int]]:
    """Scratch folders whose copy is gone (owner PID dead): what a killed copy left, with their sizes."""
    found: list[tuple[str, int]] = []
    try:
        entries = os.listdir(workdir)
    except OSError:
        return found
    for entry in sorted(entries):
        path = os.path.join(workdir, entry)
        if not any(entry.startswith(f"{SCRATCH_PREFIX}{k}-") for k in SCRATCH_KINDS) or not os.path.isdir(path):
            continue
        try:
            with open(os.path.join(path, "owner.pid")) as handle:
                os.kill(int(handle.read().strip()), 0)
            continue                                   # its copy is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue                                   # not ours to judge (no stamp, or not permitted)
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _d, files in os.walk(path) for f in files)
        found.append((path, size))
    return found


def _analyze_one(ep: Endpoint, name: str, application_name: str) -> None:
    schema, _, table = name.partition(".")
    with connect(ep, application_name=application_name) as conn:
        conn.execute(f"ANALYZE {_qualified(schema, table)}")


def analyze(ep: Endpoint, tables: list[str], *, jobs: int = 2,
            application_name: str = "runbook-bot-analyze") -> float:
    """ANALYZE each copied table, `jobs` at a time, so the new side's first queries do not plan blind
    (a restore leaves pg_stats empty); materialized views too. Returns the seconds it took."""
    began = time.monotonic()
    with connect(ep, application_name=application_name) as conn:
        # Materialized views are restored populated but unanalysed too.
        tables = tables + [r[0] for r in conn.execute(
            "SELECT schemaname || '.' || matviewname FROM pg_matviews WHERE ispopulated").fetchall()]
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="analyze") as pool:
        list(pool.map(lambda name: _analyze_one(ep, name, application_name), tables))
    return time.monotonic() - began


def terminate_backends(ep: Endpoint, tag: str) -> int:
    """End the target backends our (now stopped) children used, so nothing keeps writing or locking."""
    try:
        with connect(ep, application_name="runbook-bot-cancel") as conn:
            # 14+: wait (up to 5 s) until each backend is gone, so that nothing of ours still holds a lock
            # when the caller goes on (a rollback's DROP SCHEMA would queue behind it).
            wait = ", 5000" if int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 140000 else ""
            rows = conn.execute(f"SELECT pg_terminate_backend(pid{wait}) FROM pg_stat_activity "
                                "WHERE application_name = %s AND pid <> pg_backend_pid()", (tag,)).fetchall()
            return len(rows)
    except psycopg.Error:
        return 0  # the server is unreachable: nothing of ours can be running on it either


def _parallel(req: CopyRequest, progress: Callable[[float, str], None], check_cancelled: Callable[[], None],
              on_source_released: Callable[[], None]) -> CopyOutcome:
    tracker = Tracker(req.tables, {"dump": 0.35, "restore": 0.65})
    outcome = CopyOutcome("parallel")
    folder = scratch_folder("dump", req.workdir)
    dump_dir = os.path.join(folder, "dump")
    phase = {"now": "dump"}

    def on_line(name: str, line: str) -> None:
        if name == "pg_dump":
            m = re.search(r"finished item \d+ TABLE DATA (\S+)", line)
            if m:
                for qualified in tracker.size:
                    if qualified.split(".", 1)[1] == m.group(1) and qualified not in tracker.done["dump"]:
                        tracker.finish("dump", qualified)
                        break
        else:
            m = _FINISHED.search(line)
            if m and m.group(1) in tracker.items:
                tracker.finish("restore", tracker.items[m.group(1)])
                outcome.tables_done += 1

    children = Children(on_line, folder)
    monitors = {"dump": _Monitor(req.source), "restore": _Monitor(req.target)}

    def body() -> CopyOutcome:
        started = time.monotonic()
        argv = [req.dump.path, "-Fd", "-j", str(req.jobs), "-Z", "0", "-b", "-v", "--no-sync",
                "--no-owner", "--no-acl", "-f", dump_dir]
        if req.snapshot:
            argv += ["--snapshot", req.snapshot]
        argv += _table_args(req.only_tables)
        children.start("pg_dump", argv, _source_env(req))
        _loop(req, children, tracker, progress, check_cancelled, monitors, lambda: phase["now"])
        outcome.seconds["dump"] = time.monotonic() - started
        for table in tracker.size:
            tracker.finish("dump", table)
        on_source_released()

        listing = subprocess.run([req.restore.path, "-l", dump_dir], capture_output=True, text=True, check=True)
        for line in listing.stdout.splitlines():
            m = _LIST_DATA.match(line)
            if m:
                tracker.items[m.group(1)] = f"{m.group(2)}.{m.group(3)}"
        outcome.items = len(tracker.items)

        started = time.monotonic()
        phase["now"] = tracker.phase = "restore"
        children.procs.clear()
        children.start("pg_restore", [req.restore.path, "-j", str(req.jobs), "-v", "--no-owner", "--no-acl",
                                      "--exit-on-error", "-d", req.target.dbname, dump_dir],
                       _target_env(req))
        _loop(req, children, tracker, progress, check_cancelled, monitors, lambda: phase["now"])
        outcome.seconds["restore"] = time.monotonic() - started
        progress(1.0, f"restore: {len(tracker.size)}/{len(tracker.size)} tables, indexes built")
        return outcome

    return _guarded(req, children, body, monitors=monitors, folder=folder)


def _stream(req: CopyRequest, progress: Callable[[float, str], None], check_cancelled: Callable[[], None],
            on_source_released: Callable[[], None]) -> CopyOutcome:
    tracker = Tracker(req.tables, {"copy": 1.0})
    outcome = CopyOutcome("stream")
    current: dict[str, str | None] = {"table": None}

    def on_line(name: str, line: str) -> None:
        if name != "pg_restore":
            return
        m = _PROCESSING.search(line)
        if m:
            # One COPY at a time: the table before this one is finished.
            if current["table"]:
                tracker.finish("copy", current["table"])
                outcome.tables_done += 1
            current["table"] = m.group(1)

    children = Children(on_line)
    monitors = {"copy": _Monitor(req.target)}

    def body() -> CopyOutcome:
        started = time.monotonic()
        argv = [req.dump.path, "-Fc", "-Z", "0", "-b", "-v", "--no-owner", "--no-acl"]
        if req.snapshot:
            argv += ["--snapshot", req.snapshot]
        argv += _table_args(req.only_tables)
        dump = children.start("pg_dump", argv, _source_env(req), stdout=subprocess.PIPE)
        children.start("pg_restore", [req.restore.path, "-v", "--no-owner", "--no-acl", "--exit-on-error",
                                      "-d", req.target.dbname], _target_env(req), stdin=dump.stdout)
        assert dump.stdout is not None
        dump.stdout.close()  # pg_restore holds the read end; pg_dump gets SIGPIPE if it dies
        _loop(req, children, tracker, progress, check_cancelled, monitors, lambda: "copy")
        if current["table"]:
            tracker.finish("copy", current["table"])
            outcome.tables_done += 1
        outcome.seconds["copy"] = time.monotonic() - started
        on_source_released()
        progress(1.0, "copy: done, indexes built")
        return outcome

    return _guarded(req, children, body, monitors=monitors)


def _pgcopydb(req: CopyRequest, progress: Callable[[float, str], None], check_cancelled: Callable[[], None],
              on_source_released: Callable[[], None]) -> CopyOutcome:
    if req.pgcopydb is None:
        raise CopyFailed("strategy pgcopydb: pgcopydb is not installed (Debian: apt-get install pgcopydb)")
    tracker = Tracker(req.tables, {"copy": 1.0})
    outcome = CopyOutcome("pgcopydb")
    folder = scratch_folder("pgcopydb", req.workdir)
    last_line = {"text": ""}

    def on_line(name: str, line: str) -> None:
        last_line["text"] = line

    children = Children(on_line, folder)
    monitors = {"copy": _Monitor(req.target)}

    def body() -> CopyOutcome:
        started = time.monotonic()
        argv = [req.pgcopydb.path, "clone", "--table-jobs", str(req.jobs), "--index-jobs", str(req.jobs),
                "--no-owner", "--no-acl", "--dir", os.path.join(folder, "work")]
        if req.snapshot:
            argv += ["--snapshot", req.snapshot]
        if req.only_tables:
            filters = os.path.join(folder, "filters.ini")
            with open(filters, "w") as handle:
                handle.write("[include-only-table]\n" + "\n".join(req.only_tables) + "\n")
            argv += ["--filters", filters]
        # pgcopydb runs pg_dump/pg_restore itself: put the ones we checked first on PATH.
        path = os.path.dirname(req.dump.path) + os.pathsep + os.environ.get("PATH", "")
        # (libpq reads PGOPTIONS for pgcopydb's connections to both sides)
        env = _target_env(req, {
            "PGCOPYDB_SOURCE_PGURI": req.source.url(), "PGCOPYDB_TARGET_PGURI": req.target.url(), "PATH": path,
        }, major=min(req.source_major, req.target_major))
        for key in list(env):
            if key in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"):
                del env[key]
        children.start("pgcopydb", argv, env)
        _loop(req, children, tracker, progress, check_cancelled, monitors, lambda: "copy")
        outcome.seconds["copy"] = time.monotonic() - started
        outcome.tables_done = len(req.tables)
        on_source_released()
        progress(1.0, "copy: done, indexes built")
        return outcome

    return _guarded(req, children, body, monitors=monitors, folder=folder)


def _relay(req: CopyRequest, progress: Callable[[float, str], None], check_cancelled: Callable[[], None],
           on_source_released: Callable[[], None]) -> CopyOutcome:
    if req.psql is None:
        raise CopyFailed("strategy relay needs psql next to pg_dump (install the client package)")
    relay = _Relay(req, progress, check_cancelled)

    def body() -> CopyOutcome:
        relay.schema()
        relay.tables()
        on_source_released()
        relay.links()
        relay.analyse_rest()
        return relay.outcome

    try:
        return _guarded(req, relay.children, body, monitors={"copy": relay.monitor}, folder=relay.folder)
    finally:
        relay.analysing.shutdown(wait=True, cancel_futures=True)


class _Relay:
    """The `relay` strategy: schema; then a pipeline per table (relay its rows; for a big table, build its
    own keys and indexes and ANALYZE it while the next tables copy; the foreign keys into big tables one
    at a time as their tables settle); then the linking post-data items (the other foreign keys,
    triggers, partition index ATTACHes, materialized view data) with `pg_restore -j`.

    Every child is started from the thread that runs the strategy (see `die_with_parent`); ANALYZE runs
    in threads with the copy's tag as application_name, so a cancel's `terminate_backends` ends it too.
    """

    def __init__(self, req: CopyRequest, progress: Callable[[float, str], None],
                 check_cancelled: Callable[[], None]) -> None:
        self.req, self.progress, self.check_cancelled = req, progress, check_cancelled
        self.tracker = Tracker(req.tables, {"copy": 0.9, "indexes": 0.1})
        self.outcome = CopyOutcome("relay")
        self.folder = scratch_folder("relay", req.workdir)
        self.post = os.path.join(self.folder, "post-data.dump")
        self.children = Children(lambda name, line: None, self.folder)
        self.monitor = _Monitor(req.target)
        self.src_env, self.tgt_env = _source_env(req), _target_env(req)
        self.snapshot = ["--snapshot", req.snapshot] if req.snapshot else []
        self.restore = [req.restore.path, "--no-owner", "--no-acl", "--exit-on-error", "-d", req.target.dbname]
        self.analysing = ThreadPoolExecutor(max_workers=max(1, req.jobs), thread_name_prefix="analyze")
        self.analysed: dict[str, Future[None]] = {}
        self.split = post_data.PostDataSplit()
        self.links_waiting: list[post_data.EarlyLink] = []
        self.settled: set[str] = set()       # rows in and own keys built: what an early link may need

    def _wait(self, names: list[str]) -> None:
        while any(self.children.procs[n].poll() is None for n in names):
            self.check_cancelled()
            time.sleep(0.05)
        self.children.check()

    def schema(self) -> None:
        """Pre-data (and large objects' metadata) into the target; post-data into a small archive, split."""
        req, started = self.req, time.monotonic()
        self.progress(0.0, "schema: tables, types and functions of the source")
        only = _table_args(req.only_tables)  # the runbook's tables, and no publications when asked
        if not req.replication_objects:
            only += ["--no-publications", "--no-subscriptions"]
        dump = self.children.start("pg_dump pre-data", [req.dump.path, "-Fc", "--section=pre-data", "-b",
                                                        "--no-owner", "--no-acl", *self.snapshot, *only],
                                   self.src_env, stdout=subprocess.PIPE)
        self.children.start("pg_restore pre-data", self.restore, self.tgt_env, stdin=dump.stdout)
        dump.stdout.close()
        self.children.start("pg_dump post-data", [req.dump.path, "-Fc", "--section=post-data", "--no-owner",
                                                  "--no-acl", *self.snapshot, *only, "-f", self.post], self.src_env)
        self._wait(["pg_dump pre-data", "pg_restore pre-data", "pg_dump post-data"])
        big = {t.qualified for t in req.tables if t.size >= req.early_index_bytes}
        self.split = post_data.split_post_data(req.restore, self.post, req.source, big, self.folder,
                                               application_name=req.tag,
                                               copied={t.qualified for t in req.tables})
        self.links_waiting = list(self.split.early)
        self.outcome.seconds["schema"] = time.monotonic() - started

    def _start_relay(self, name: str) -> list[str]:
        req = self.req
        if name == "large objects":
            out = self.children.start(f"pg_dump {name}", [req.dump.path, "-Fc", "--section=data",
                                                          "--exclude-table-data=*.*", "-b", *self.snapshot],
                                      self.src_env, stdout=subprocess.PIPE)
            self.children.start(f"pg_restore {name}", self.restore, self.tgt_env, stdin=out.stdout)
            out.stdout.close()
            return [f"pg_dump {name}", f"pg_restore {name}"]
        fmt = "(FORMAT binary)" if req.same_major else ""
        fmt_in = "(FORMAT binary, FREEZE)" if req.same_major else "(FREEZE)"
        psql = [req.psql.path, "-X", "-q", "-v", "ON_ERROR_STOP=1"]  # type: ignore[union-attr]
        schema, _, table = name.partition(".")
        rel = _qualified(schema, table)
        begin = ["-c", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"]
        if req.snapshot:
            begin += ["-c", f"SET TRANSACTION SNAPSHOT '{req.snapshot}'"]
        out = self.children.start(f"read {name}", [*psql, *begin, "-c", f"COPY {rel} TO STDOUT {fmt}",
                                                   "-c", "COMMIT", "-d", req.source.dbname],
                                  self.src_env, stdout=subprocess.PIPE)
        # TRUNCATE and COPY FREEZE in one transaction: the rows are born frozen.
        self.children.start(f"write {name}", [*psql, "-c", "BEGIN", "-c", f"TRUNCATE ONLY {rel}",
                                              "-c", f"COPY {rel} FROM STDIN {fmt_in}", "-c", "COMMIT",
                                              "-d", req.target.dbname], self.tgt_env, stdin=out.stdout)
        out.stdout.close()
        return [f"read {name}", f"write {name}"]

    def tables(self) -> None:
        """N relays at a time, biggest tables first (large objects ride along as one more job); as each
        big table's rows commit, its own post-data batch (up to N at a time), then its ANALYZE; and one
        foreign key at a time whose tables are settled (`post_data.EarlyLink`)."""
        req, started = self.req, time.monotonic()
        pending = [t.qualified for t in req.tables] + ["large objects"]
        running: dict[str, list[str]] = {}
        waiting: list[str] = []
        building: dict[str, str] = {}
        linking: str | None = None
        last = 0.0
        while pending or running or waiting or building or linking or self._link_ready():
            self.check_cancelled()
            ready = self._link_ready() if linking is None else None
            if ready is not None:
                linking = self._start_link(ready)
            elif linking is not None:
                code = self.children.procs[linking].poll()
                if code not in (None, 0):
                    self.children.check()
                if code == 0:
                    linking = None
            while pending and len(running) < req.jobs:
                name = pending.pop(0)
                running[name] = self._start_relay(name)
            while waiting and len(building) < req.jobs:
                name = waiting.pop(0)
                building[name] = f"post-data {name}"
                self.children.start(building[name], [*self.restore, "-L", self.split.per_table[name], self.post],
                                    self.tgt_env)
            for name, procs in list(running.items()):
                codes = [self.children.procs[n].poll() for n in procs]
                if any(c not in (None, 0) for c in codes):
                    self.children.check()
                if all(c == 0 for c in codes):
                    del running[name]
                    if name in self.tracker.size:
                        self._loaded(name, waiting)
            for name, proc_name in list(building.items()):
                code = self.children.procs[proc_name].poll()
                if code not in (None, 0):
                    self.children.check()
                if code == 0:
                    del building[name]
                    self.settled.add(name)
                    self.analysed[name] = self.analysing.submit(_analyze_one, req.target, name, req.tag)
            now = time.monotonic()
            if now - last >= 0.5:
                last = now
                self.tracker.copying("copy", self.monitor.rows())
                self.progress(self.tracker.fraction(), self.tracker.message())
            time.sleep(0.02)
        self.children.check()
        self.outcome.seconds["data"] = time.monotonic() - started

    def _loaded(self, name: str, waiting: list[str]) -> None:
        self.tracker.finish("copy", name)
        self.outcome.tables_done += 1
        if self.req.on_table_loaded is not None:
            self.req.on_table_loaded(name)
        if name in self.split.per_table:
            waiting.append(name)
            return
        self.settled.add(name)
        if name not in self.split.expression_indexed:
            # A small table's statistics do not wait for its keys (built at the end): only an
            # expression index has statistics of its own for ANALYZE to gather.
            self.analysed[name] = self.analysing.submit(_analyze_one, self.req.target, name, self.req.tag)

    def _link_ready(self) -> post_data.EarlyLink | None:
        return next((link for link in self.links_waiting if link.needs <= self.settled), None)

    def _start_link(self, link: post_data.EarlyLink) -> str:
        """One early foreign key at a time: it locks two tables, and two of them at once could deadlock
        (a key each way between two tables); nothing else in the pipeline locks more than one table."""
        self.links_waiting.remove(link)
        name = f"{link.name} ({len(self.split.early) - len(self.links_waiting)})"
        if link.item:
            argv = [*self.restore, "-L", link.item, self.post]
        else:
            argv = [self.req.psql.path, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", link.sql,  # type: ignore[union-attr]
                    "-d", self.req.target.dbname]
        self.children.start(name, argv, self.tgt_env)
        self.outcome.early_links += 1
        return name

    def links(self) -> None:
        """The post-data items that link objects, once every table's own keys exist."""
        started = time.monotonic()
        if self.links_waiting:      # (every table settled before this, so none should be left)
            self.split.write_rest(self.links_waiting)
        self.tracker.phase = "indexes"
        self.progress(self.tracker.fraction(),
                      f"indexes and constraints ({self.req.jobs} jobs, {self.split.rest_items} items)")
        self.children.start("pg_restore post-data", [*self.restore, "-j", str(self.req.jobs), "-L",
                                                     self.split.rest, self.post], self.tgt_env)
        _loop(self.req, self.children, self.tracker, self.progress, self.check_cancelled, {}, lambda: "indexes")
        self.outcome.seconds["indexes"] = time.monotonic() - started

    def analyse_rest(self) -> None:
        """ANALYZE what the pipeline did not (small tables with an expression index, materialized views):
        their indexes exist now, so expression indexes get their statistics too."""
        started = time.monotonic()
        self.progress(1.0, "analyse: the smaller tables and materialized views")
        for future in self.analysed.values():
            future.result()
        rest = [t.qualified for t in self.req.tables if t.qualified not in self.analysed]
        analyze(self.req.target, rest, jobs=self.req.jobs, application_name=self.req.tag)
        self.outcome.seconds["analyse"] = time.monotonic() - started
        self.outcome.analysed = True
        self.progress(1.0, f"copy: {len(self.tracker.size)}/{len(self.tracker.size)} tables, indexes built")


def _qualified(schema: str, name: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'
