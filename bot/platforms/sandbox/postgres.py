"""The rehearsal world's PostgreSQL: the local server when one answers, and PgBouncer in front of it.

    server = find_server()                       # 127.0.0.1:5432 (trust auth), or a clear error
    with server.database("rb_rehearsal_old_1a2b") as dbname: ...   # created, dropped on exit
    bouncer = PgBouncer.start(server)             # transaction mode; None when not installed

The world makes its own databases (unique names, dropped when it stops) and never touches others.
Why the local server and not an embedded one first: it is the one the team's tools already use, and
starting nothing is fastest. Without one, `pgserver` (a wheel that ships the binaries) is the
documented fallback: `pip install pgserver`, and the world starts a private server in a temp folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

PGBOUNCER = "/usr/sbin/pgbouncer"


class NoPostgres(RuntimeError):
    """No PostgreSQL for the world; the message says what to install."""


@dataclass
class Server:
    host: str
    port: int
    user: str = "postgres"
    stop_fn: Any = None
    bin_dir: str | None = None  # the server's own client tools (pg_dump of its major version)
    created: list[str] = field(default_factory=list)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname=dbname, autocommit=True,
                               connect_timeout=5)

    def create(self, dbname: str) -> str:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        self.created.append(dbname)
        return dbname

    def drop_created(self) -> None:
        for dbname in reversed(self.created):
            with self.connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        self.created.clear()
        if self.stop_fn is not None:
            self.stop_fn()


def _answers(host: str, port: int) -> bool:
    try:
        psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


def find_server() -> Server:
    """The local server on 127.0.0.1:5432 when it answers (trust auth); else an embedded pgserver."""
    if _answers("127.0.0.1", 5432):
        return Server("127.0.0.1", 5432)
    try:
        import pgserver  # noqa: PLC0415 (optional: only a machine without PostgreSQL needs it)
    except ImportError:
        raise NoPostgres("no PostgreSQL answers on 127.0.0.1:5432 (trust auth, user postgres); start one, "
                         "or `pip install pgserver` for an embedded server") from None
    folder = tempfile.mkdtemp(prefix="rb-rehearsal-pg-")
    embedded = pgserver.get_server(folder, cleanup_mode="delete")
    info = psycopg.conninfo.conninfo_to_dict(embedded.get_uri())
    from pgserver._commands import POSTGRES_BIN_PATH  # the wheel's binaries, pg_dump among them

    return Server(str(info.get("host")), int(info.get("port") or 5432), str(info.get("user") or "postgres"),
                  stop_fn=embedded.cleanup, bin_dir=str(POSTGRES_BIN_PATH))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgBouncer:
    """PgBouncer (transaction mode unless told otherwise) on a free loopback port, forwarding every
    database to `server`."""

    port: int
    proc: subprocess.Popen
    folder: Path

    @classmethod
    def start(cls, server: Server, aliases: dict[str, str] | None = None,
              pool_mode: str = "transaction") -> PgBouncer | None:
        """`aliases`: pool name -> database (DigitalOcean's pool URLs name the pool, not the database);
        `pool_mode`: transaction (DigitalOcean's pools), session or statement."""
        binary = PGBOUNCER if os.path.exists(PGBOUNCER) else shutil.which("pgbouncer")
        if not binary:
            return None
        folder = Path(tempfile.mkdtemp(prefix="rb-rehearsal-pgbouncer-"))
        folder.chmod(0o755)
        port = free_port()
        (folder / "pgbouncer.ini").write_text(
            "[databases]\n" + "".join(f"{alias} = host={server.host} port={server.port} dbname={db}\n"
                                       for alias, db in (aliases or {}).items())
            + f"* = host={server.host} port={server.port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
            f"admin_users = {server.user}\npool_mode = {pool_mode}\nmax_client_conn = 50\ndefault_pool_size = 5\n"
            "syslog = 0\n")
        (folder / "userlist.txt").write_text(f'"{server.user}" ""\n')
        for path in folder.iterdir():
            path.chmod(0o644)
        # PgBouncer refuses to run as root; `-u postgres` drops privileges after reading its files.
        argv = [binary] + (["-u", "postgres"] if os.geteuid() == 0 else []) + [str(folder / "pgbouncer.ini")]
        log = open(folder / "pgbouncer.log", "wb")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                return None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return cls(port, proc, folder)
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    return None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
