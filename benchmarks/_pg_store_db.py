"""A throwaway PostgreSQL database for a benchmark's store, shared by engine.py and slack_ack.py.

    with store_database("postgresql://postgres@127.0.0.1:5432/postgres", "engine") as url:
        if url:                      # None (and a line saying so) when the server is not there
            open_store(url)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def store_database(admin_url: str, label: str) -> Iterator[str | None]:
    """A fresh database (dropped after, its connections ended first), or None when unreachable."""
    import psycopg

    name = f"rb_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        print(f"{label} on PostgreSQL: skipped, {admin_url} is not reachable ({str(exc).splitlines()[0]})")
        yield None
        return
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
