"""DigitalOcean Managed Databases: a cluster's *direct* connection (never a pool's).

    conn = databases.direct_connection("orders-db")     # cluster name or id
    conn["host"], conn["port"], conn["user"]             # conn["password"] is registered as a secret

Why never a pool: DigitalOcean's pools are PgBouncer in transaction mode (port 25061); pg_dump and
pg_restore set session state that leaks across clients there (pgbouncer#452), and the copy needs
more than one session anyway. The cluster's `connection` is the primary itself (port 25060).
"""

from __future__ import annotations

import re
from typing import Any

from bot import secrets
from bot.platforms import digitalocean as do
from bot.platforms import errors

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def find_cluster(cluster: str) -> dict[str, Any]:
    """The cluster by id, or by name through the list (names are unique per account)."""
    client = do.client()
    if _UUID.match(cluster):
        return do.call("databases.get_cluster", f"database cluster {cluster}", client.databases.get_cluster,
                       cluster, expect="database")["database"]
    listing = do.call("databases.list_clusters", "database clusters", client.databases.list_clusters,
                      expect="databases")["databases"] or []
    for item in listing:
        if item.get("name") == cluster:
            return do.call("databases.get_cluster", f"database cluster {cluster}", client.databases.get_cluster,
                           item["id"], expect="database")["database"]
    names = ", ".join(sorted(str(i.get("name")) for i in listing)) or "none"
    raise errors.NotFound(do.PLATFORM, "databases.list_clusters", f"database cluster {cluster}",
                          f"no cluster of that name (found: {names})")


def direct_connection(cluster: str) -> dict[str, Any]:
    """The cluster's `connection` (host, port, user, password, database, ssl)."""
    found = find_cluster(cluster)
    conn = found.get("connection") or {}
    if not conn.get("host"):
        raise errors.PlatformError(do.PLATFORM, "databases.get_cluster", f"database cluster {cluster}",
                                   "the cluster has no connection details yet (is it still being created?)")
    secrets.register(conn.get("password"), conn.get("uri"))
    return {**conn, "engine": found.get("engine"), "version": found.get("version"), "name": found.get("name")}


def pool_connection(cluster: str, pool: str) -> dict[str, Any]:
    """A connection pool's `connection` (PgBouncer): what an app configured with the pool's URL reaches.

    Used to *check* the app's path (db.copy's `app_url`), never to copy through.
    """
    found = find_cluster(cluster)
    pools = do.call("databases.list_connection_pools", f"pools of database cluster {cluster}",
                    do.client().databases.list_connection_pools, found["id"], expect="pools")["pools"] or []
    names = sorted(str(p.get("name")) for p in pools)
    chosen = next((p for p in pools if p.get("name") == pool), None)
    if chosen is None:
        raise errors.NotFound(do.PLATFORM, "databases.list_connection_pools", f"pool {pool} of {cluster}",
                              f"no pool of that name (found: {', '.join(names) or 'none'})")
    conn = chosen.get("connection") or {}
    secrets.register(conn.get("password"), conn.get("uri"))
    return {**conn, "mode": chosen.get("mode"), "pool": chosen.get("name")}

