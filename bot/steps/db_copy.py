"""`db.copy`: copy a PostgreSQL database fast, prove it, and refuse the traps (`db.preflight`: the checks only).

    - id: copy-db
      kind: db.copy
      with:
        source: old                      # aws-ecs target with `database:` -> RDS; or env:OLD_DATABASE_URL
        target: {target: new}            # do-database -> the cluster's direct connection, never a pool
        strategy: auto                   # auto (= relay) | relay | parallel | stream | pgcopydb
        overwrite: false                 # a non-empty target is refused unless true (the plan lists the drops)
        grants: ["GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app"]
        app_url: env:APP_DATABASE_URL    # optional: warn when the app's own URL goes through a pooler

Plan (read-only): PgBouncer in front of either side (refused, the direct endpoint named), server
versions and a `pg_dump` at least the source's major (what to install when missing), extensions
used on the source and available on the target, roles the dump mentions (the copy uses
`--no-owner --no-acl`; `grants` run afterwards), target emptiness (or, with `overwrite: true`, the
exact schemas, extensions and large objects that will be dropped), size per table, connection limits
on both sides, free disk for the chosen strategy and an ETA.

Apply: the source is read under one exported snapshot (pg_dump `--snapshot`), so the copy and the
source-side checksums describe the same instant even while the app writes; the source side of the
verification runs while the restore is still building indexes. Sequences are then set to the
source's values and the runbook's grants run.

The incomplete marker: before the first byte is written, apply creates the table
`public._runbook_bot_copy_incomplete` on the target (with a note naming the run), and drops it only
after the copy, sequences and grants succeeded. A cancelled, failed or crashed copy leaves it: the
next plan reports "a previous copy did not finish", verify fails on it, and apps that look can see it.
A table (not a comment on the database) because it needs no ownership of the database and is dropped
with everything else by rollback or `overwrite`.

Rollback: only when the target was empty before the copy. It drops every user schema (with
everything in it), every extension and every large object on the target, then recreates an empty
`public` schema: the target is as empty as the plan found it. After an `overwrite` there is nothing
to go back to (the old contents were dropped by request), so rollback refuses.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot import config, secrets
from bot.platforms import errors
from bot.platforms.postgres import copy as pgcopy
from bot.platforms.postgres import endpoints, pooler, preflight, reaper, schema_compare, tools, verify
from bot.platforms.postgres.connect import DatabaseError, Endpoint, ExportedSnapshot, connect, quote_ident, qualified
from bot.platforms.postgres.preflight import MARKER_TABLE, DbFacts, human_bytes, human_seconds
from bot.steps.base import Change, Plan, PlanRefused, Result, StepError, StepKind, Verification, register

Spec = str | dict[str, str]
_GRANT = re.compile(r"^\s*GRANT\s", re.I)


class CopyInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Spec = Field(description="URL, env:NAME, {env: NAME}, a target name, or {target: NAME, password_env: X}")
    target: Spec = Field(description="Same forms as source; never a pooled endpoint")
    strategy: Literal["auto", "relay", "parallel", "stream", "pgcopydb"] = "auto"
    jobs: int | None = Field(None, ge=1, le=32, description="Parallel workers (default: CPUs, at most 4)")
    overwrite: bool = Field(False, description="Drop what the target holds first (the plan lists it)")
    verify: bool = True
    tables: list[str] | None = Field(None, description="Only these tables (schema.table; schema defaults to public)")
    grants: list[str] = Field(default_factory=list, description="GRANT statements run on the target after the copy")
    app_url: Spec | None = Field(None, description="The app's own database URL, checked for a transaction pooler")
    workdir: str | None = Field(None, description="Folder for the parallel strategy's dump (default: the temp dir)")
    toast_compression: Literal["auto", "lz4", "pglz", "target"] = Field(
        "auto", description="How the copy compresses TOASTed values on the target: auto = lz4 when the target "
                            "offers it and nobody set its default_toast_compression, else the target's own; "
                            "target = always the target's own")

    @field_validator("tables")
    @classmethod
    def _qualify(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for name in value:
            name = name.strip()
            if not name or name.count(".") > 1:
                raise ValueError(f"tables: {name!r} is not `table` or `schema.table`")
            out.append(name if "." in name else f"public.{name}")
        return out

    @field_validator("grants")
    @classmethod
    def _grants(cls, value: list[str]) -> list[str]:
        for statement in value:
            body = statement.strip().rstrip(";")
            if not _GRANT.match(body):
                raise ValueError(f"grants: {statement[:60]!r} is not a GRANT statement")
            if ";" in body:
                raise ValueError(f"grants: {statement[:60]!r} holds more than one statement")
        return [s.strip().rstrip(";") for s in value]


class CopyOutputs(BaseModel):
    strategy: str = ""
    tables: int = 0
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 2))


def _grant_roles(statement: str) -> list[str]:
    m = re.search(r"\bTO\s+(.+?)(\s+WITH\s+GRANT\s+OPTION|\s+GRANTED\s+BY\s+.*)?$", statement, re.I | re.S)
    if not m:
        return []
    roles = []
    for part in m.group(1).split(","):
        name = part.strip()
        if name.upper().startswith("GROUP "):
            name = name[6:].strip()
        if name.upper() in ("PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"):
            continue
        roles.append(name[1:-1].replace('""', '"') if name.startswith('"') else name.lower())
    return roles


def _resolve(ctx: Any, inputs: CopyInputs) -> tuple[Endpoint, Endpoint]:
    try:
        return (endpoints.resolve(inputs.source, ctx, field="source"),
                endpoints.resolve(inputs.target, ctx, field="target"))
    except endpoints.EndpointError as exc:
        raise PlanRefused(str(exc)) from None


def _pooler_harm(mode: str | None) -> str:
    """What a pooler of this mode does to a copy (said for the mode found, not assumed)."""
    if mode == "session":
        return ("a session pooler holds a server connection per client and counts them against its pool, "
                "so parallel jobs queue or fail, and its timeouts cut long COPYs")
    if mode in ("transaction", "statement"):
        return f"a {mode} pooler leaks session settings (search_path) between clients"
    return "session settings may leak between clients and pool limits cut parallel jobs"


def _object_lines(facts: DbFacts) -> list[str]:
    lines = []
    for schema in facts.schemas:
        tables = [t.name for t in facts.tables if t.schema == schema]
        count = facts.objects.get(schema, 0)
        if not count and schema == "public":
            continue
        shown = ", ".join(tables[:8]) + (f" and {len(tables) - 8} more" if len(tables) > 8 else "")
        lines.append(f"schema {schema} ({count} objects" + (f"; tables {shown}" if tables else "") + ")")
    if facts.extensions:
        lines.append("extensions " + ", ".join(sorted(facts.extensions)))
    if facts.large_objects:
        lines.append(f"{facts.large_objects} large objects")
    if facts.marker:
        lines.append(f"the incomplete-copy marker ({facts.marker})")
    return lines


def drop_everything(ep: Endpoint) -> list[str]:
    """Empty a database: every user schema, extension and large object; an empty `public` again."""
    done: list[str] = []
    with connect(ep, autocommit=False, application_name="runbook-bot-drop") as conn:
        facts_schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
            " ORDER BY 1").fetchall()]
        for (ext,) in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'").fetchall():
            conn.execute(f"DROP EXTENSION IF EXISTS {quote_ident(ext)} CASCADE")
            done.append(f"extension {ext}")
        for schema in facts_schemas:
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            done.append(f"schema {schema}")
        count = conn.execute("SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata").fetchone()[0]
        if count:
            done.append(f"{count} large objects")
        conn.execute("CREATE SCHEMA IF NOT EXISTS public")
        conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        conn.commit()
    return done


class _Preflight:
    """The plan shared by db.copy and db.preflight."""

    def plan(self, ctx: Any, inputs: CopyInputs) -> Plan:
        src_ep, tgt_ep = _resolve(ctx, inputs)
        blocking: list[str] = []
        warnings: list[str] = []
        if (src_ep.host, src_ep.port, src_ep.dbname) == (tgt_ep.host, tgt_ep.port, tgt_ep.dbname):
            raise PlanRefused(f"source and target are the same database ({tgt_ep.display()})")

        with ThreadPoolExecutor(max_workers=3) as pool:
            src_pool_f = pool.submit(pooler.detect, src_ep)
            tgt_pool_f = pool.submit(pooler.detect, tgt_ep)
            app_f = None
            if inputs.app_url is not None:
                try:
                    app_ep = endpoints.resolve(inputs.app_url, ctx, field="app_url")
                except endpoints.EndpointError as exc:
                    raise PlanRefused(str(exc)) from None
                app_f = pool.submit(pooler.detect, app_ep)
            src_pool, tgt_pool = src_pool_f.result(), tgt_pool_f.result()
            app_report = app_f.result() if app_f else None
        data: dict[str, Any] = {"source": src_ep.display(), "target": tgt_ep.display(),
                                "pooler": {"source": src_pool.to_dict(), "target": tgt_pool.to_dict()}}
        if app_report is not None:
            warning = pooler.app_warning(app_ep, app_report)
            if warning:
                warnings.append(warning)
            data["pooler"]["app"] = app_report.to_dict()
        for side, ep, report in (("source", src_ep, src_pool), ("target", tgt_ep, tgt_pool)):
            if report.detected:
                blocking.append(f"{side} {ep.display()}: {report.describe()}. pg_dump/pg_restore through a "
                                f"pooler break: {_pooler_harm(report.pool_mode)}; {report.direct_hint(ep)}.")
        if blocking:
            return Plan(summary=f"copy {src_ep.display()} -> {tgt_ep.display()}: refused, a pooler is in the way",
                        blocking=blocking, warnings=warnings, data=data)

        src, tgt = preflight.gather(src_ep, tgt_ep)
        data.update({"source_version": src.server_version, "target_version": tgt.server_version,
                     "source_major": src.major, "target_major": tgt.major})

        # Versions and tools.
        if tgt.major < src.major:
            blocking.append(f"target server {tgt.server_version} is older than source {src.server_version}: "
                            f"pg_dump output is not restorable into an older major; use a target of "
                            f"PostgreSQL {src.major} or newer")
        dump_tool = restore_tool = None
        try:
            dump_tool, restore_tool = tools.find_pair(src.major)
            data["tools"] = {"pg_dump": f"{dump_tool.path} ({dump_tool.version})",
                             "pg_restore": f"{restore_tool.path} ({restore_tool.version})"}
        except tools.ToolMissing as exc:
            blocking.append(str(exc))
        pgcopydb_tool = tools.find_pgcopydb()

        # Extensions, schemas, roles.
        missing = sorted(set(src.extensions) - set(tgt.available_extensions))
        if missing:
            blocking.append(f"extensions used on the source are not available on the target: {', '.join(missing)} "
                            f"(ask the provider to enable them, or drop them on the source first)")
        if src.heroku_ext:
            warnings.append("the source keeps extensions in Heroku's `heroku_ext` schema; the copy recreates "
                            "that schema on the target (heroku/roadmap#199)")
        foreign_owners = sorted(set(src.owners) - set(tgt.roles))
        if foreign_owners:
            warnings.append(f"source objects are owned by {', '.join(foreign_owners)}, roles the target does not "
                            f"have: the copy uses --no-owner --no-acl, so everything will belong to "
                            f"{tgt.current_user}" + ("; add `grants` for the app's role" if not inputs.grants else ""))
        if not inputs.grants:
            losses = schema_compare.acl_losses(schema_compare.catalog(src_ep))
            if losses:
                warnings.append(f"no `grants:` given: the copy drops {len(losses)} ACLs the source has "
                                f"(--no-owner --no-acl): " + "; ".join(losses[:13])
                                + (f" and {len(losses) - 13} more" if len(losses) > 13 else ""))
        for statement in inputs.grants:
            absent = [r for r in _grant_roles(statement) if r not in tgt.roles]
            if absent:
                blocking.append(f"grants: role {', '.join(absent)} does not exist on the target "
                                f"({statement[:80]})")
        if not (tgt.can_create_schema or tgt.is_superuser):
            blocking.append(f"target role {tgt.current_user} may not create schemas in {tgt.database} "
                            f"(GRANT CREATE ON DATABASE {tgt.database} TO {tgt.current_user})")

        # What to copy.
        tables = src.tables
        if inputs.tables is not None:
            known = {t.qualified for t in src.tables}
            unknown = [t for t in inputs.tables if t not in known]
            if unknown:
                blocking.append(f"tables: not on the source: {', '.join(unknown)}")
            tables = [t for t in src.tables if t.qualified in inputs.tables]
        data_bytes = sum(t.size for t in tables)
        data["tables"] = [t.qualified for t in tables]
        data["table_info"] = [[t.schema, t.name, t.size, t.total_size, t.est_rows] for t in tables]
        data["only_tables"] = inputs.tables

        # Target contents.
        changes: list[Change] = []
        data["target_was_empty"] = tgt.is_empty
        if not tgt.is_empty:
            what = _object_lines(tgt)
            if not inputs.overwrite:
                prefix = (f"a previous copy into the target did not finish ({tgt.marker}); "
                          if tgt.marker else "")
                blocking.append(f"{prefix}target {tgt_ep.display()} is not empty: {'; '.join(what)}. "
                                f"Set `overwrite: true` to drop all of it first, or choose an empty database")
            else:
                for line in what:
                    changes.append(Change(action="drop", resource=line, detail="overwrite: true"))
                data["drop"] = what
        changes.append(Change(action="copy", resource=f"{len(tables)} tables, {human_bytes(data_bytes)}",
                              before=src_ep.display(), after=tgt_ep.display()))
        if inputs.grants:
            changes.append(Change(action="grant", resource=f"{len(inputs.grants)} statements",
                                  detail="; ".join(inputs.grants)))

        # Connections.
        # source: pg_dump -j N opens N+1, plus the snapshot holder, the progress monitor and N verifiers;
        # target: pg_restore -j N, the monitor, N verifiers.
        jobs, fit_warnings, fit_blocking = fit_jobs(inputs.jobs or _default_jobs(),
                                                    [("source", src, 3), ("target", tgt, 1)])
        warnings += fit_warnings
        blocking += fit_blocking
        data["jobs"] = jobs

        # Strategy, disk, ETA.
        workdir = inputs.workdir or config.get("RUNBOOK_BOT_WORKDIR") or tempfile.gettempdir()
        need = preflight.estimated_dump_size(tables)
        free_disk = preflight.free_disk(workdir) if os.path.isdir(workdir) else 0
        disk_ok = free_disk > need * 1.2
        strategy = inputs.strategy
        psql_tool = tools.find_psql(dump_tool) if dump_tool else None
        pgcopydb_fits = pgcopydb_tool is not None and max(src.major, tgt.major) <= 15 and inputs.tables is None
        if strategy == "auto":
            # relay: source reads and target writes overlap, no disk, rows born frozen; measured the
            # fastest of the stock-tool strategies (benchmarks/db_copy.py). Without psql, a directory
            # dump when the disk holds it, else a single stream.
            if psql_tool is not None:
                strategy, reason = "relay", "parallel COPY relays, no intermediate files"
            elif disk_ok:
                strategy, reason = "parallel", "psql not found; local disk holds the dump"
            else:
                strategy, reason = "stream", (f"psql not found and only {human_bytes(free_disk)} free in {workdir} "
                                              f"(the dump needs about {human_bytes(need)}): one stream, no disk")
            data["strategy_reason"] = reason
        elif strategy == "relay" and psql_tool is None:
            blocking.append("strategy relay: psql not found beside pg_dump or on PATH: " + tools.install_hint(src.major))
        elif strategy == "parallel" and not disk_ok:
            blocking.append(f"strategy parallel: only {human_bytes(free_disk)} free in {workdir}, the dump needs "
                            f"about {human_bytes(need)} (use `strategy: stream`, or `workdir:` on a bigger disk)")
        elif strategy == "pgcopydb" and not pgcopydb_fits:
            blocking.append("strategy pgcopydb: " + (
                "pgcopydb is not installed (Debian: apt-get install pgcopydb)" if pgcopydb_tool is None
                else "not with a `tables` filter" if inputs.tables is not None
                else "Debian's pgcopydb 0.10 supports PostgreSQL up to 15 (install a newer one from apt.postgresql.org)"))
        data["toast_compression"], toast_note = toast_compression(inputs.toast_compression, tgt)
        if data["toast_compression"] is False:
            blocking.append(toast_note)
        elif toast_note:
            warnings.append(toast_note)
        stale_lines, data["stale_scratch"] = scratch_leftovers(workdir)
        warnings += stale_lines
        data.update({"strategy": strategy, "workdir": workdir, "data_bytes": data_bytes,
                     "pgcopydb": pgcopydb_tool.path if pgcopydb_tool else None})
        eta = preflight.eta_seconds(strategy, data_bytes, inputs.verify)
        data["eta_seconds"] = round(eta, 1)

        table = [["table", "size", "with indexes", "rows (est.)"]]
        for t in tables[:25]:
            table.append([t.qualified, human_bytes(t.size), human_bytes(t.total_size), str(t.est_rows)])
        if len(tables) > 25:
            table.append([f"... {len(tables) - 25} more", "", "", ""])
        info = (f"PostgreSQL {src.server_version} -> {tgt.server_version}; extensions "
                f"{', '.join(sorted(src.extensions)) or 'none'}; {src.large_objects} large objects; "
                f"{len(src.sequences)} sequences; connections free: source {src.free_connections}, "
                f"target {tgt.free_connections}")
        warnings.insert(0, info)
        summary = (f"copy {len(tables)} tables ({human_bytes(data_bytes)}) {src_ep.display()} -> {tgt_ep.display()} "
                   f"with {strategy} ({jobs} jobs{'; ' + data['strategy_reason'] if data.get('strategy_reason') else ''})"
                   f"{' and verify' if inputs.verify else ''}, "
                   f"ETA about {human_seconds(eta)} (measured on local disks; a network link will dominate)")
        return Plan(summary=summary, changes=changes, warnings=warnings, blocking=blocking, table=table, data=data)


def _tables_from(plan: Plan) -> list[preflight.TableInfo]:
    return [preflight.TableInfo(*row) for row in plan.data.get("table_info", [])]


def scratch_leftovers(workdir: str) -> tuple[list[str], list[str]]:
    """What interrupted copies left in `workdir` (their scratch folders, processes still running in their
    recorded process groups): plan warnings, and the folders for :func:`clean_scratch`."""
    lines, paths = [], []
    for path, size in pgcopy.stale_scratch(workdir):
        alive = reaper.leftover_processes(path)
        still = (f" and {len(alive)} of its processes still running ("
                 f"{'; '.join(f'pid {pid}: {secrets.redact(cmd)[:80]}' for pid, cmd in alive[:3])}), which it "
                 f"stops first" if alive else "")
        lines.append(f"an interrupted copy left {path} ({human_bytes(size)}){still}; this copy removes it")
        paths.append(path)
    return lines, paths


def clean_scratch(ctx: Any, paths: list[str], workdir: str | None) -> None:
    """Stop and remove what the plan named (see :func:`scratch_leftovers`), if still abandoned now."""
    still_stale = {path for path, _size in pgcopy.stale_scratch(workdir or tempfile.gettempdir())}
    for path in paths:
        if path in still_stale:
            for pid, command in reaper.reap(path):
                ctx.log(f"stopped pid {pid} ({secrets.redact(command)[:80]}), left running by an interrupted copy")
            shutil.rmtree(path, ignore_errors=True)
            ctx.log(f"removed {path}, left by an interrupted copy")


def fit_jobs(jobs: int, sides: list[tuple[str, DbFacts, int]]) -> tuple[int, list[str], list[str]]:
    """Lower `jobs` to the free connections of each (name, facts, fixed connections) side: each job takes
    two connections (a relay's reader or writer, and a checksum or index build). (jobs, warnings, blocking)."""
    warnings: list[str] = []
    blocking: list[str] = []
    for side, facts, extra in sides:
        free = facts.free_connections
        if free < extra + 1:
            blocking.append(f"{side} has {free} free connections (max_connections {facts.max_connections}, "
                            f"{facts.connections_in_use} in use): the copy needs at least {extra + 1}")
        elif free < 2 * jobs + extra:
            fitted = max(1, (free - extra) // 2)
            warnings.append(f"{side} has {free} free connections: jobs lowered from {jobs} to {fitted}")
            jobs = min(jobs, fitted)
    return jobs, warnings, blocking


def toast_compression(wanted: str, target: preflight.DbFacts) -> tuple[str | None | bool, str]:
    """(the default_toast_compression the copy's writers set on the target, or None for the target's own,
    or False when `wanted` cannot be had; the line the plan shows).

        toast_compression("auto", facts)   # ("lz4", "TOAST values are compressed with lz4 ...") on a stock 14+

    A logical copy recompresses every TOASTed value with the target session's default, whatever the source
    used; pglz compresses about half as fast as lz4 (3.5 s against 1.7 s for 350 MB of documents here) and
    decompresses slower on every later read. Columns with their own COMPRESSION keep it (the schema
    carries it). `auto` picks lz4 only where nobody chose the target's default (pg_settings.source
    'default'), so a DBA's setting wins."""
    facts = target.toast_compression
    if wanted == "target":
        return None, ""
    if facts is None:
        if wanted == "auto":
            return None, ""
        return False, (f"toast_compression: {wanted} needs PostgreSQL 14+ on the target (it runs "
                       f"{target.server_version}); use `toast_compression: target`")
    setting, source, offered = facts
    if wanted == "auto":
        if "lz4" not in offered or source != "default" or setting == "lz4":
            return None, ""
        return "lz4", ("TOAST values are compressed with lz4 on the target (its default_toast_compression is the "
                       "built-in pglz, set by nobody; lz4 writes about twice as fast and reads faster; "
                       "`toast_compression: target` keeps pglz)")
    if wanted not in offered:
        return False, (f"toast_compression: the target does not offer {wanted} (default_toast_compression "
                       f"allows {', '.join(offered)}); use `toast_compression: target`")
    return wanted, (f"TOAST values are compressed with {wanted} on the target (its default_toast_compression "
                    f"is {setting}, set in {source})" if wanted != setting else "")


@register
class DbCopy(_Preflight, StepKind):
    undoes_failure = True       # a failed or interrupted copy leaves partial data and its marker
    name = "db.copy"
    mutating = True
    Inputs = CopyInputs
    Outputs = CopyOutputs

    def apply(self, ctx: Any, inputs: CopyInputs, plan: Plan) -> Result:
        if plan.blocking:
            raise PlanRefused("the plan was refused: " + "; ".join(plan.blocking))
        src_ep, tgt_ep = _resolve(ctx, inputs)
        data = plan.data
        clean_scratch(ctx, data.get("stale_scratch", []), data.get("workdir"))
        target_now = preflight.facts(tgt_ep)
        if not target_now.is_empty:
            if not inputs.overwrite:
                raise PlanRefused(f"target {tgt_ep.display()} is no longer empty since the plan: "
                                  f"{'; '.join(_object_lines(target_now))}; plan again")
            extra = [line for line in _object_lines(target_now) if line not in data.get("drop", [])]
            if extra:
                raise PlanRefused(f"target changed since the plan; it now also holds: {'; '.join(extra)}; plan again")
            try:
                dropped = drop_everything(tgt_ep)
            except DatabaseError as exc:
                raise StepError(f"overwrite: could not empty {tgt_ep.display()}: {secrets.redact(str(exc)).strip()} "
                                f"(nothing was dropped: it runs in one transaction)") from None
            ctx.log(f"overwrite: dropped {', '.join(dropped)} on {tgt_ep.display()}")
        self._mark(ctx, tgt_ep, src_ep)
        if data.get("only_tables"):
            self._prepare_filtered(src_ep, tgt_ep, data["only_tables"])
        dump_tool, restore_tool = tools.find_pair(int(data["source_major"]))
        tables = _tables_from(plan)
        total_mb = max(0.1, round(data["data_bytes"] / 1048576, 1))
        started = time.monotonic()
        measured: dict[str, Any] = {}

        method = verify.method_for(int(data["source_major"]), int(data["target_major"]))
        names = [t.qualified for t in tables]
        jobs = int(data["jobs"])
        with ExportedSnapshot(src_ep) as snap:
            # Checksums of each table's source side as soon as its rows are in (relay), or once the copy
            # has read the source (the other strategies); the target sides once every table is in: the
            # verification overlaps the copy.
            tag = f"runbook-bot-copy-{uuid.uuid4().hex[:8]}"
            measurer = (verify.PairMeasurer(src_ep, tgt_ep, method=method, snapshot=snap.id, jobs=jobs,
                                            application_name=tag) if inputs.verify else None)
            loaded: list[str] = []

            def table_loaded(name: str) -> None:
                # relay: the table's rows are committed. Its source side is measured now; its target side
                # waits until every table is in (see source_read).
                assert measurer is not None
                loaded.append(name)
                measurer.submit(name, sides=("source",))

            request = pgcopy.CopyRequest(
                source=src_ep, target=tgt_ep, strategy=data["strategy"], jobs=jobs, tables=tables,
                workdir=data["workdir"], dump=dump_tool, restore=restore_tool,
                pgcopydb=tools.find_pgcopydb() if data["strategy"] == "pgcopydb" else None,
                psql=tools.find_psql(dump_tool), same_major=data["source_major"] == data["target_major"],
                source_major=int(data["source_major"]), target_major=int(data["target_major"]),
                snapshot=snap.id, only_tables=data.get("only_tables"), tag=tag,
                toast_compression=data.get("toast_compression") or None,
                on_table_loaded=table_loaded if measurer else None)

            def report(fraction: float, message: str) -> None:
                # The engine measures rate and ETA within each phase: while indexes build the MiB do
                # not move, and it says "no honest ETA" instead of a frozen guess.
                ctx.progress(round(fraction * total_mb, 1), total_mb, message, unit="MiB",
                             phase=pgcopy.phase_of(message))

            def source_read() -> None:
                # The data phase keeps both cores busy with COPYs; what follows (foreign keys, triggers,
                # the partitioned tables' validation) mostly runs on one: the target's checksums fill the
                # other instead of slowing the COPYs.
                if measurer is not None:
                    for name in names:
                        measurer.submit(name, sides=("source",))
                    for name in loaded:
                        measurer.submit(name, sides=("target",))

            try:
                outcome = pgcopy.run(request, progress=report, check_cancelled=ctx.check_cancelled,
                                     on_source_released=source_read)
                ctx.check_cancelled()
            except pgcopy.CopyFailed as exc:
                if measurer is not None:
                    measurer.stop()
                raise StepError(f"the copy failed; the target is marked incomplete (public.{MARKER_TABLE}); "
                                f"roll back or re-run with overwrite: true. {exc}") from None
            except BaseException:
                if measurer is not None:
                    measurer.stop()
                raise
            sequences = self._sync_sequences(src_ep, tgt_ep)
            if not outcome.analysed:
                ctx.progress(total_mb, total_mb, "ANALYZE of every copied table on the target", unit="MiB",
                             phase="analyse")
                outcome.seconds["analyse"] = pgcopy.analyze(tgt_ep, names, jobs=jobs)
            if inputs.grants:
                self._grant(tgt_ep, inputs.grants)
            if measurer is not None:
                ctx.progress(total_mb, total_mb, "checksums of every table on both sides", unit="MiB",
                             phase="verify")
                began = time.monotonic()
                measured["tables"], measured["target_tables"], errors = measurer.finish(names, ctx.check_cancelled)
                outcome.seconds["checksums_wait"] = time.monotonic() - began
                # A source measure that failed is taken again by verify() (against the live source); a
                # failed target measure only makes verify() measure the target itself.
                if any(e.startswith("source ") for e in errors):
                    measured["error"] = secrets.redact("; ".join(errors[:5]))
                elif errors:
                    measured.pop("target_tables")
        source_meta = verify.measure_meta(src_ep, sequences=list(sequences)) if inputs.verify else None
        with connect(tgt_ep, application_name="runbook-bot-copy") as conn:
            conn.execute(f"DROP TABLE IF EXISTS public.{quote_ident(MARKER_TABLE)}")
        seconds = time.monotonic() - started

        details: dict[str, Any] = {"strategy": outcome.strategy, "phases": {k: round(v, 2) for k, v in outcome.seconds.items()},
                                   "sequences": sequences, "seconds": round(seconds, 2), "checksum_method": method,
                                   "early_foreign_keys": outcome.early_links}
        if source_meta is not None and "error" not in measured:
            source_meta.tables = measured["tables"]
            source_meta.sequences = sequences
            details["source_measures"] = source_meta.to_dict()
            if "target_tables" in measured:
                details["target_checksums"] = measured["target_tables"]
        elif "error" in measured:
            details["source_measure_error"] = measured["error"]
        rows = sum(r[0] or 0 for r in measured.get("tables", {}).values())
        mib_s = data["data_bytes"] / 1048576 / seconds if seconds else 0
        return Result(
            summary=(f"copied {len(tables)} tables ({human_bytes(data['data_bytes'])}) with {outcome.strategy} in "
                     f"{human_seconds(seconds)} ({mib_s:.0f} MiB/s); {len(sequences)} sequences set; "
                     f"{len(inputs.grants)} grants"),
            outputs=CopyOutputs(strategy=outcome.strategy, tables=len(tables), rows=rows,
                                bytes=int(data["data_bytes"]), seconds=round(seconds, 2)).model_dump(),
            undo={"target_was_empty": bool(data.get("target_was_empty")), "target": tgt_ep.display()},
            details=details,
        )

    @staticmethod
    def _grant(tgt_ep: Endpoint, grants: list[str]) -> None:
        """All of the runbook's GRANTs in one transaction: all of them or none."""
        with connect(tgt_ep, autocommit=False, application_name="runbook-bot-grants") as conn:
            for statement in grants:
                try:
                    conn.execute(statement)
                except DatabaseError as exc:
                    raise StepError(f"grants: {statement!r} failed: {secrets.redact(str(exc)).strip()}; the data "
                                    f"is copied but the target stays marked incomplete (public.{MARKER_TABLE}); "
                                    f"none of the grants was applied") from None
            conn.commit()

    @staticmethod
    def _left_by_this_run(ctx: Any, tgt_ep: Endpoint) -> bool:
        """True when the target holds the incomplete-copy marker this run's step wrote (see `_mark`): the
        copy started on a target it had checked empty (or emptied on request), so emptying it restores that."""
        marker = preflight.facts(tgt_ep).marker or ""
        return marker.startswith(f"run {ctx.run_id} step {ctx.step_id} ")

    def _mark(self, ctx: Any, tgt_ep: Endpoint, src_ep: Endpoint) -> None:
        note = (f"run {ctx.run_id} step {ctx.step_id} copying from {src_ep.display()} started "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        with connect(tgt_ep, autocommit=False, application_name="runbook-bot-copy") as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS public")
            conn.execute(f"CREATE TABLE public.{quote_ident(MARKER_TABLE)} (note text NOT NULL)")
            conn.execute(f"COMMENT ON TABLE public.{quote_ident(MARKER_TABLE)} IS "
                         "'runbook-bot: a copy into this database has not finished; do not use it'")
            conn.execute(f"INSERT INTO public.{quote_ident(MARKER_TABLE)} VALUES (%s)", (note,))
            conn.commit()

    @staticmethod
    def _prepare_filtered(src_ep: Endpoint, tgt_ep: Endpoint, only: list[str]) -> None:
        """`pg_dump -t` dumps the tables alone: their schemas and the source's extensions (a citext
        column needs citext) are created first."""
        with connect(src_ep, application_name="runbook-bot-copy") as conn:
            extensions = conn.execute("SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n "
                                      "ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql'").fetchall()
        with connect(tgt_ep, autocommit=False, application_name="runbook-bot-copy") as conn:
            for schema in sorted({name.partition(".")[0] for name in only} | {s for _, s in extensions}):
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            for ext, schema in extensions:
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {quote_ident(ext)} WITH SCHEMA {quote_ident(schema)}")
            conn.commit()

    @staticmethod
    def _sync_sequences(src_ep: Endpoint, tgt_ep: Endpoint) -> dict[str, list[Any]]:
        """Set each sequence the target has to the source's value now (>= what the snapshot saw)."""
        target_seqs = verify.measure_meta(tgt_ep).sequences
        source = verify.measure_meta(src_ep, sequences=list(target_seqs)).sequences
        with connect(tgt_ep, autocommit=False, application_name="runbook-bot-copy") as conn:
            for name, (last, called) in source.items():
                schema, _, seq = name.partition(".")
                conn.execute("SELECT setval(%s::regclass, %s, %s)", (qualified(schema, seq), last, called))
            conn.commit()
        return source

    def verify(self, ctx: Any, inputs: CopyInputs, result: Result) -> Verification | None:
        if not inputs.verify:
            return None
        src_ep, tgt_ep = _resolve(ctx, inputs)
        stored = result.details.get("source_measures")
        ctx.progress(0, None, "schema, sequences and large objects of both sides; table checksums", phase="verify")
        if stored:
            src = verify.Measures.from_dict(stored)
            taken = result.details.get("target_checksums")
            if taken is not None:
                # Taken by apply as each table's rows committed, stamped so that one cheap scan of xmin
                # proves them still current; a table written to since is measured again. The rest
                # (sequences, extensions, large objects, the table list, the marker) is read now.
                method = result.details.get("checksum_method", "text")
                tgt = verify.measure_meta(tgt_ep, sequences=list(src.sequences))
                changed = verify.changed_since(tgt_ep, taken, jobs=_default_jobs())
                tgt.tables = {name: value[:2] for name, value in taken.items()}
                tgt.tables.update(verify.measure_tables(tgt_ep, changed, jobs=_default_jobs(), method=method))
            else:
                tgt = verify.measure(tgt_ep, list(src.tables), jobs=_default_jobs(), sequences=list(src.sequences),
                                     method=result.details.get("checksum_method", "text"))
            basis = "the source as of the copy's snapshot"
        else:
            only = None
            if inputs.tables is not None:
                only = inputs.tables
            src, tgt = verify.measure_both(src_ep, tgt_ep, only, jobs=_default_jobs())
            basis = "the source as it is now"
        report = verify.compare(src, tgt, expect_no_extra_tables=inputs.tables is None)
        # The schema too: a dropped index, constraint, trigger or default passes a data-only check.
        src_catalog = schema_compare.catalog(src_ep)
        schema_bad = ([] if inputs.tables is not None else
                      schema_compare.compare(src_catalog, schema_compare.catalog(tgt_ep, acls=False), acls=False))
        report.mismatches += schema_bad
        report.ok = report.ok and not schema_bad
        summary = report.summary() + f" (against {basis})"
        if report.ok:
            summary += f"; schema equal ({sum(len(v) for k, v in src_catalog.objects.items() if k in schema_compare.QUERIES)} objects)"
        if inputs.grants:
            # The grants ran: name each source ACL item the target lacks (grantee and privileges).
            losses = schema_compare.acl_not_carried(src_catalog, schema_compare.catalog(tgt_ep, acls=True))
            summary += (f"; grants: {len(losses)} ACL items of the source not on the target, e.g. "
                        f"{'; '.join(losses[:3])}" if losses else "; grants: every ACL item of the source is on the target")
        else:
            losses = schema_compare.acl_losses(src_catalog)
            if losses:
                summary += (f"; not carried (--no-owner --no-acl): {len(losses)} ACLs, e.g. {'; '.join(losses[:3])}"
                            " (no `grants:` given)")
        return Verification(ok=report.ok, summary=summary, table=None if report.ok else report.table(),
                            details={"mismatches": [m.__dict__ for m in report.mismatches],
                                     "tables": report.tables_checked, "rows": report.rows_checked,
                                     "acls_not_carried": losses})

    def plan_rollback(self, ctx: Any, inputs: CopyInputs, result: Result) -> Plan:
        _, tgt_ep = _resolve(ctx, inputs)
        if not result.undo and not self._left_by_this_run(ctx, tgt_ep):
            return Plan(summary=f"the failed copy never wrote to {tgt_ep.display()} (no marker of this run): "
                                f"it is as the plan found it", no_op=True, data={"drop": []})
        if result.undo and not result.undo.get("target_was_empty"):
            return Plan(summary="cannot undo this copy", blocking=[
                "the target was not empty before the copy (overwrite: true dropped its former contents), so "
                "there is nothing to go back to; restore the target from its backup instead"])
        facts = preflight.facts(tgt_ep)
        what = _object_lines(facts)
        changes = [Change(action="drop", resource=line, detail="created by the copy") for line in what]
        changes.append(Change(action="create", resource="schema public (empty)", detail="as the target was before"))
        return Plan(summary=f"empty {tgt_ep.display()} again: drop every schema, extension and large object the "
                            f"copy created (the target was empty before it)",
                    changes=changes, data={"drop": what, "target": tgt_ep.display()}, no_op=facts.is_empty)

    def rollback(self, ctx: Any, inputs: CopyInputs, result: Result) -> Result:
        _, tgt_ep = _resolve(ctx, inputs)
        if not result.undo:
            # A failed or interrupted copy: what is there was written by this run only if its marker says so.
            if not self._left_by_this_run(ctx, tgt_ep):
                return Result(summary=f"nothing written by this run on {tgt_ep.display()}; left as it was")
        elif not result.undo.get("target_was_empty"):
            raise StepError("the target was not empty before the copy; rollback would destroy data it cannot restore")
        dropped = drop_everything(tgt_ep)
        return Result(summary=f"dropped {', '.join(dropped) or 'nothing'} on {tgt_ep.display()}; the target is empty",
                      details={"dropped": dropped})

    def verify_rollback(self, ctx: Any, inputs: CopyInputs, result: Result, undo: Result) -> Verification | None:
        _, tgt_ep = _resolve(ctx, inputs)
        if not result.undo and undo.summary.startswith("nothing written by this run"):
            left = self._left_by_this_run(ctx, tgt_ep)
            return Verification(ok=not left, summary="no trace of this run's copy on the target" if not left
                                else "this run's incomplete-copy marker is still on the target")
        facts = preflight.facts(tgt_ep)
        return Verification(ok=facts.is_empty, summary="the target is empty" if facts.is_empty else
                            "the target still holds: " + "; ".join(_object_lines(facts)))


@register
class DbPreflight(_Preflight, StepKind):
    """The db.copy checks alone (read-only): run it early in a runbook to learn of a pooler or a
    missing extension days before the maintenance window."""

    name = "db.preflight"
    mutating = False
    Inputs = CopyInputs

    def apply(self, ctx: Any, inputs: CopyInputs, plan: Plan) -> Result:
        if plan.blocking:
            raise StepError("preflight found problems: " + "; ".join(plan.blocking))
        return Result(summary="preflight passed: " + plan.summary, details={"warnings": plan.warnings},
                      table=plan.table)


__all__ = ["DbCopy", "DbPreflight", "CopyInputs", "drop_everything", "errors"]
