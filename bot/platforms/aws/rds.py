"""RDS and Aurora: where a database is (host, port, master user, database name).

    info = rds.describe_endpoint(target, "orders-db")   # DB instance id, or Aurora cluster id
    info.host, info.port, info.user, info.dbname, info.kind     # kind: "instance" | "cluster"

An instance id is tried first, then a cluster id (an Aurora cluster's writer endpoint). Passwords
are never returned by the RDS API: the runbook names the environment variable that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.platforms import aws, errors

# IAM actions of `describe_endpoint`: the instance lookup, then the Aurora cluster lookup.
IAM_READ = ("rds:DescribeDBInstances", "rds:DescribeDBClusters")


@dataclass(frozen=True)
class RdsEndpoint:
    kind: str
    identifier: str
    host: str
    port: int
    user: str
    dbname: str
    engine: str
    engine_version: str


def describe_endpoint(target: Any, identifier: str) -> RdsEndpoint:
    """The writer endpoint of an RDS instance or Aurora cluster; NotFound when neither exists."""
    client = aws.client(target, "rds")
    try:
        with aws.translate("rds.describe_db_instances", f"db instance {identifier}"):
            found = client.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except errors.NotFound:
        found = []
    if found:
        db = found[0]
        endpoint = db.get("Endpoint") or {}
        if not endpoint.get("Address"):
            raise errors.Unavailable(aws.PLATFORM, "rds.describe_db_instances", f"db instance {identifier}",
                                     f"no endpoint yet (status {db.get('DBInstanceStatus')})")
        return RdsEndpoint("instance", identifier, endpoint["Address"], int(endpoint.get("Port", 5432)),
                           db.get("MasterUsername", "postgres"), db.get("DBName") or "postgres",
                           db.get("Engine", ""), db.get("EngineVersion", ""))
    with aws.translate("rds.describe_db_clusters", f"db instance or cluster {identifier}"):
        clusters = client.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"]
    if not clusters:
        raise errors.NotFound(aws.PLATFORM, "rds.describe_db_clusters", f"db instance or cluster {identifier}")
    db = clusters[0]
    return RdsEndpoint("cluster", identifier, db["Endpoint"], int(db.get("Port", 5432)),
                       db.get("MasterUsername", "postgres"), db.get("DatabaseName") or "postgres",
                       db.get("Engine", ""), db.get("EngineVersion", ""))
