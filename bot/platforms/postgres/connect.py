"""Database endpoints and psycopg 3 connections with the session settings pinned.

    ep = parse_url("postgresql://app:s3cret@db.example.com:5432/app?sslmode=require", label="source")
    ep.display()                       # 'postgresql://app:••••••@db.example.com:5432/app?sslmode=require'
    with connect(ep) as conn:          # autocommit; TimeZone=UTC, DateStyle=ISO, ... already SET
        conn.execute("select now()::text").fetchone()

An :class:`Endpoint` keeps the password in memory only (it is registered with `bot.secrets` the moment
it is parsed, and left out of `repr`). Child processes (`pg_dump`, `pg_restore`, `pgcopydb`) get the
connection through `PG*` environment variables from :meth:`Endpoint.libpq_env`, never on the command
line where `ps` would show it.

Why settings are pinned with `SET` after connecting rather than the `options=` startup parameter:
PgBouncer refuses `options` (`unsupported startup parameter`), and the pooler check must be able to
connect through one to say what it is. Why `prepare_threshold=None`: a connection that might reach a
transaction-mode pooler must not use server-side prepared statements.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import conninfo as pg_conninfo

from bot import secrets
from bot.platforms import errors

PLATFORM = "postgres"

# The text forms of timestamps, dates, floats, bytea and intervals depend on these; both sides of a
# checksum comparison must see the same ones, whatever the server's or the role's defaults are.
SESSION_SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "search_path": "pg_catalog, public",
}

# conninfo keys that libpq also reads from the environment (for child processes).
_ENV_KEYS = {
    "sslmode": "PGSSLMODE",
    "hostaddr": "PGHOSTADDR",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "options": "PGOPTIONS",
}


@dataclass(frozen=True)
class Endpoint:
    """Where a database is. `label` says where it came from ("env:DATABASE_URL", "rds db-1")."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    params: dict[str, str] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        secrets.register(self.password)

    @property
    def address(self) -> str:
        """host:port, safe to show."""
        return f"{self.host}:{self.port}"

    def display(self) -> str:
        """The URL with the password masked: safe for plans, logs and errors."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += f":{secrets.MASK}"
        query = "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.dbname, safe='')}" + (
            f"?{query}" if query else "")

    def conninfo(self, **overrides: Any) -> str:
        """A libpq conninfo string (holds the password: pass it to psycopg only, never print it)."""
        values: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": self.dbname,
                                  "user": self.user, **self.params}
        if self.password:
            values["password"] = self.password
        values.update(overrides)
        return pg_conninfo.make_conninfo(**{k: v for k, v in values.items() if v is not None})

    def url(self) -> str:
        """A full URL with the password (for tools that take only a URL, through the environment)."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in sorted(self.params.items()))
        value = f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.dbname, safe='')}" + (
            f"?{query}" if query else "")
        if self.password:
            secrets.register(value)
        return value

    def libpq_env(self) -> dict[str, str]:
        """`PG*` variables for a child process (merge into a copy of os.environ)."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGDATABASE": self.dbname, "PGUSER": self.user}
        if self.password:
            env["PGPASSWORD"] = self.password
        for key, value in self.params.items():
            if key in _ENV_KEYS:
                env[_ENV_KEYS[key]] = str(value)
        return env

    def with_dbname(self, dbname: str) -> Endpoint:
        return dataclasses.replace(self, dbname=dbname)


def parse_url(url: str, *, label: str = "") -> Endpoint:
    """Parse a `postgres://` / `postgresql://` URL or a `key=value` conninfo into an :class:`Endpoint`."""
    try:
        parts = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        secrets.register(url)         # unparsable: no telling which part is the password
        raise errors.InvalidRequest(PLATFORM, "parse url", label,
                                    secrets.redact(f"not a PostgreSQL URL or conninfo: {exc}")) from None
    password = parts.pop("password", None)
    # Only the password is secret: a URL without one must stay readable in the plan people approve.
    if password:
        secrets.register(password, url)
    host = str(parts.pop("host", "") or "localhost")
    if "," in host:
        raise errors.InvalidRequest(PLATFORM, "parse url", label, "several hosts in one URL are not supported")
    port = int(parts.pop("port", 5432) or 5432)
    user = str(parts.pop("user", "") or "postgres")
    dbname = str(parts.pop("dbname", "") or user)
    return Endpoint(host=host, port=port, dbname=dbname, user=user, password=password,
                    params={k: str(v) for k, v in parts.items()}, label=label)


def client_check(server_version: int) -> dict[str, str]:
    """How often a running statement checks that its client is still connected: from PostgreSQL 14
    (`server_version` as libpq gives it, 150004); an older server does not know the name and refuses it."""
    return {"client_connection_check_interval": "1000"} if server_version >= 140000 else {}


def pin_settings(conn: psycopg.Connection) -> None:
    """SET the session settings that text forms and checksums depend on, in one round trip; on 14+ also
    `client_connection_check_interval`, so a statement of a bot that died (a checksum of a big table on
    the source) stops within a second instead of running to its end."""
    settings = {**SESSION_SETTINGS, **client_check(conn.info.server_version)}
    calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
    conn.execute(f"SELECT {calls}", [item for pair in settings.items() for item in pair])


def connect(ep: Endpoint, *, pin: bool = True, autocommit: bool = True, application_name: str = "runbook-bot",
            connect_timeout: int = 10, **overrides: Any) -> psycopg.Connection:
    """Open a connection; a failure becomes `Unavailable` naming the endpoint (password masked)."""
    try:
        conn = psycopg.connect(ep.conninfo(application_name=application_name, connect_timeout=connect_timeout,
                                           **overrides),
                               autocommit=autocommit, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        raise errors.Unavailable(PLATFORM, "connect", ep.display(), secrets.redact(first_line(exc))) from None
    if pin:
        pin_settings(conn)
        if not autocommit:
            conn.commit()
    return conn


def first_line(exc: BaseException) -> str:
    """The informative part of a libpq error ('FATAL:  database "x" does not exist')."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


# Steps catch this name, not the driver's: the driver stays behind this package's door.
DatabaseError = psycopg.Error


class ExportedSnapshot:
    """A REPEATABLE READ transaction whose snapshot other sessions import (`SET TRANSACTION SNAPSHOT`).

        with ExportedSnapshot(source) as snap:
            copy_tables(..., snapshot=snap.id)      # the copy and the checksums see the same instant
    """

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.conn: psycopg.Connection | None = None
        self.id: str | None = None

    def __enter__(self) -> ExportedSnapshot:
        conn = connect(self.ep, autocommit=False, application_name="runbook-bot-snapshot")
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        # A managed server may end idle transactions; this one must live as long as the copy.
        conn.execute("SELECT set_config('idle_in_transaction_session_timeout', '0', true)")
        self.id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        self.conn = conn
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.conn is not None:
            self.conn.close()
