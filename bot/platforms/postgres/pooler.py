"""Is there a PgBouncer between us and the database? (PgBouncer has no official answer: pgbouncer#249.)

    report = detect(ep)
    if report.detected:
        print(report.signals, report.direct)     # ['backend_pid', 'admin_console', ...], '10.0.0.5:5432'

Signals, strongest first (measured against PgBouncer 1.18 and PostgreSQL 15, see notes/db-copy.md):

- `backend_pid`: the backend PID libpq received at connect (`conn.info.backend_pid`, from
  BackendKeyData) differs from `SELECT pg_backend_pid()`. PgBouncer invents the key it hands the
  client, so they differ; straight to PostgreSQL they are equal.
- `admin_console`: connecting to database `pgbouncer` reaches PgBouncer's console (`SHOW VERSION`
  answers "PgBouncer ...") or is refused with PgBouncer's own words (`not allowed`, `no such
  database`); PostgreSQL answers `database "pgbouncer" does not exist`.
- `startup_options`: a startup packet carrying `options=` gets `unsupported startup parameter`, which
  PostgreSQL never says (PgBouncer without `ignore_startup_parameters = options`).

Hints, shown but not enough alone: DigitalOcean's pooled port 25061, a `pgbouncer.` host (Fly).
Not signals: `SHOW POOLS` fails the same way both ways; `server_version` passes through.

When the console answers, `SHOW DATABASES` tells the host and port PgBouncer forwards to: that is
the *direct endpoint* the plan names. Otherwise the plan names the best guess (port 25060 for 25061,
`direct.` for `pgbouncer.`) or asks for the provider's direct connection string.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from bot.platforms.postgres.connect import Endpoint, connect, first_line
from bot.platforms import errors

SIGNAL_TEXT = {
    "backend_pid": "the backend PID at connect differs from pg_backend_pid()",
    "admin_console": "database `pgbouncer` is PgBouncer's admin console",
    "startup_options": "the `options` startup parameter is refused (`unsupported startup parameter`)",
}


@dataclass
class PoolerReport:
    detected: bool
    signals: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    direct: str | None = None          # host:port of the database behind the pooler, when known
    direct_source: str = ""            # how `direct` was learned ("SHOW DATABASES", "port 25061 -> 25060")
    pool_mode: str | None = None       # "transaction", "session", "statement", when the console said
    version: str | None = None         # PgBouncer's version, when the console said

    def describe(self) -> str:
        why = "; ".join(SIGNAL_TEXT.get(s, s) for s in self.signals)
        if not self.detected:
            return "no pooler detected"
        version = (self.version or "").removeprefix("PgBouncer").strip()
        what = "PgBouncer" + (f" {version}" if version else "")
        mode = f" in {self.pool_mode} mode" if self.pool_mode else " (pool mode unknown)"
        return f"{what}{mode} detected ({why})"

    def direct_hint(self, ep: Endpoint) -> str:
        if self.direct:
            return f"connect directly to {self.direct} ({self.direct_source}) instead of {ep.address}"
        return (f"{ep.address} goes through a pooler: use the provider's direct (non-pooled) connection "
                f"string (DigitalOcean: the cluster's `connection`, port 25060; Fly: the `direct.` host)")

    def to_dict(self) -> dict:
        return {"detected": self.detected, "signals": self.signals, "hints": self.hints, "direct": self.direct,
                "direct_source": self.direct_source, "pool_mode": self.pool_mode, "version": self.version}


def detect(ep: Endpoint, *, connect_timeout: int = 10) -> PoolerReport:
    """Probe the endpoint with three connections; return which signals fired."""
    report = PoolerReport(detected=False)
    _check_backend_pid(ep, report, connect_timeout)
    _check_admin_console(ep, report, connect_timeout)
    _check_startup_options(ep, report, connect_timeout)
    _hints(ep, report)
    report.detected = bool(report.signals)
    return report


def _check_backend_pid(ep: Endpoint, report: PoolerReport, timeout: int) -> None:
    with connect(ep, pin=False, connect_timeout=timeout) as conn:
        announced = conn.info.backend_pid
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    if row is not None and announced != row[0]:
        report.signals.append("backend_pid")


def _check_admin_console(ep: Endpoint, report: PoolerReport, timeout: int) -> None:
    try:
        conn = psycopg.connect(ep.conninfo(dbname="pgbouncer", connect_timeout=timeout, application_name="runbook-bot"),
                               autocommit=True, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        message = first_line(exc)
        if 'database "pgbouncer" does not exist' in message:
            return  # PostgreSQL itself answered
        if "not allowed" in message or "no such database" in message:
            report.signals.append("admin_console")
        return
    with conn:
        try:
            # The console speaks the simple query protocol only.
            version_rows = conn.execute("SHOW VERSION", prepare=False).fetchall()
        except psycopg.Error:
            return  # a real database named `pgbouncer`: not a signal
        text = " ".join(str(v) for row in version_rows for v in row)
        if "pgbouncer" not in text.lower():
            return
        report.signals.append("admin_console")
        report.version = text
        try:
            cur = conn.execute("SHOW DATABASES", prepare=False)
        except psycopg.Error:
            return  # a stats-only user: the console exists but will not say more
        names = [d.name for d in cur.description or []]
        for row in cur.fetchall():
            entry = dict(zip(names, row, strict=True))
            if entry.get("name") in (ep.dbname, "*") or entry.get("database") == ep.dbname:
                host, port = entry.get("host"), entry.get("port")
                if host and port:
                    report.direct = f"{host}:{port}"
                    report.direct_source = "PgBouncer's SHOW DATABASES"
                report.pool_mode = entry.get("pool_mode") or report.pool_mode
                if entry.get("name") == ep.dbname:
                    break
        if report.pool_mode is None:
            try:
                for row in conn.execute("SHOW CONFIG", prepare=False).fetchall():
                    if row[0] == "pool_mode":
                        report.pool_mode = row[1]
            except psycopg.Error:
                pass  # optional detail


def _check_startup_options(ep: Endpoint, report: PoolerReport, timeout: int) -> None:
    try:
        with connect(ep, pin=False, connect_timeout=timeout, options="-c application_name=runbook-bot-probe"):
            return
    except errors.Unavailable as exc:
        if "unsupported startup parameter" in exc.message:
            report.signals.append("startup_options")
            return
        raise


def _hints(ep: Endpoint, report: PoolerReport) -> None:
    if ep.port == 25061:
        report.hints.append("port 25061 is DigitalOcean's pooled port (direct is 25060)")
        if not report.direct:
            report.direct, report.direct_source = f"{ep.host}:25060", "DigitalOcean's direct port"
    if ep.host.startswith("pgbouncer."):
        report.hints.append("a `pgbouncer.` host is Fly Managed Postgres' pooled address")
        if not report.direct:
            report.direct = f"direct.{ep.host[len('pgbouncer.'):]}:{ep.port}"
            report.direct_source = "Fly's `direct.` host"


APP_WARNING = (
    "the app's database URL ({where}) goes through PgBouncer{mode}: in transaction mode a prepared "
    "statement made on one backend is reused on another (DuplicatePreparedStatementError, seed 000). "
    "asyncpg: create_pool(..., statement_cache_size=0); psycopg 3: connect(..., prepare_threshold=None); "
    "or point the app at the direct endpoint{direct}."
)


def app_warning(ep: Endpoint, report: PoolerReport) -> str | None:
    """The plan's warning for an app URL behind a pooler (None when no pooler or session mode)."""
    if not report.detected or report.pool_mode == "session":
        return None
    mode = f" in {report.pool_mode} mode" if report.pool_mode else " (pool mode unknown; DigitalOcean's default is transaction)"
    direct = f" ({report.direct})" if report.direct else ""
    return APP_WARNING.format(where=ep.display(), mode=mode, direct=direct)
