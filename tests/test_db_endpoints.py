"""Resolving db.copy's `source`/`target`: URLs, env vars, and targets through the real adapters
(moto server for RDS/Aurora, Prism with DigitalOcean's contract, a local HTTP server for Heroku)."""

from __future__ import annotations

import boto3
import pytest

from bot import secrets
from bot.platforms import errors
from bot.platforms.postgres import endpoints
from bot.runbook.targets import AwsEcsTarget, DoDatabaseTarget, HerokuTarget, PostgresTarget
from bot.steps.context import StepContext


def ctx(**targets) -> StepContext:
    return StepContext(run_id="r", step_id="s", runbook_name="t", params={}, targets=targets, outputs={})


def test_url_env_forms_and_postgres_target(monkeypatch):
    monkeypatch.setenv("OLD_DB", "postgresql://app:pw-from-env-1@old.example.com:5433/orders")
    for spec in ("env:OLD_DB", {"env": "OLD_DB"}, "old", "old.database", {"target": "old"}):
        ep = endpoints.resolve(spec, ctx(old=PostgresTarget(url_env="OLD_DB")))
        assert (ep.host, ep.port, ep.dbname, ep.user, ep.password) == (
            "old.example.com", 5433, "orders", "app", "pw-from-env-1")
    assert secrets.redact("pw-from-env-1") == secrets.MASK
    with pytest.raises(endpoints.EndpointError, match="environment variable MISSING is not set"):
        endpoints.resolve("env:MISSING", ctx())
    with pytest.raises(endpoints.EndpointError, match="unknown target 'nope'"):
        endpoints.resolve("nope", ctx())


def test_rds_instance_and_aurora_cluster(aws, monkeypatch):
    rds = boto3.client("rds", region_name="us-east-1", endpoint_url=aws.url)
    rds.create_db_instance(DBInstanceIdentifier="orders-db", Engine="postgres", DBInstanceClass="db.t3.micro",
                           MasterUsername="app", MasterUserPassword="not-returned-1", DBName="orders",
                           AllocatedStorage=20)
    rds.create_db_cluster(DBClusterIdentifier="orders-aurora", Engine="aurora-postgresql", MasterUsername="boss",
                          MasterUserPassword="not-returned-2", DatabaseName="ledger")
    monkeypatch.setenv("RDS_PASSWORD", "from-the-runbook-env")
    instance = AwsEcsTarget(cluster="c", service="api", database="orders-db", endpoint_url=aws.url)
    ep = endpoints.resolve({"target": "old", "password_env": "RDS_PASSWORD"}, ctx(old=instance))
    assert ep.host.startswith("orders-db.") and ep.port == 5432
    assert (ep.user, ep.dbname, ep.password) == ("app", "orders", "from-the-runbook-env")
    assert ep.label == "rds instance orders-db"

    cluster = AwsEcsTarget(cluster="c", service="api", database="orders-aurora", endpoint_url=aws.url)
    ep = endpoints.resolve({"target": "old", "password_env": "RDS_PASSWORD", "sslmode": "require"}, ctx(old=cluster))
    assert ep.host.startswith("orders-aurora.cluster-") and (ep.user, ep.dbname) == ("boss", "ledger")
    assert ep.params == {"sslmode": "require"}

    with pytest.raises(endpoints.EndpointError, match="password_env"):
        endpoints.resolve("old", ctx(old=instance))
    gone = AwsEcsTarget(cluster="c", service="api", database="no-such-db", endpoint_url=aws.url)
    with pytest.raises(errors.NotFound, match="no-such-db"):
        endpoints.resolve({"target": "old", "password_env": "RDS_PASSWORD"}, ctx(old=gone))


def test_heroku_database_url_config_var(httpserver, monkeypatch):
    httpserver.expect_request("/apps/api-prod/config-vars").respond_with_json(
        {"DATABASE_URL": "postgres://u1:heroku-secret-pw@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d9x", "WORKERS": "4"})
    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-123")
    ep = endpoints.resolve("old", ctx(old=HerokuTarget(app="api-prod")))
    assert (ep.host, ep.dbname, ep.user) == ("ec2-1-2-3-4.compute-1.amazonaws.com", "d9x", "u1")
    assert ep.params["sslmode"] == "require"
    assert "heroku-secret-pw" not in ep.display() and secrets.redact("heroku-secret-pw") == secrets.MASK
    httpserver.expect_request("/apps/bare/config-vars").respond_with_json({"WORKERS": "4"})
    with pytest.raises(errors.NotFound, match="DATABASE_URL is not set"):
        endpoints.resolve("old", ctx(old=HerokuTarget(app="bare")))


def test_digitalocean_cluster_direct_connection(prism, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_API_URL", prism.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "do-token-abc")
    target = DoDatabaseTarget(cluster="9cc10173-e9ea-4176-9dbc-a4cee4c4ff30", database="app")
    ep = endpoints.resolve("new", ctx(new=target))
    # The contract's example cluster: its direct connection (25060), never a pool (25061).
    assert ep.port == 25060 and ep.host.endswith(".db.ondigitalocean.com")
    assert ep.dbname == "app" and ep.params == {"sslmode": "require"}
    assert ep.password and secrets.redact(ep.password) == secrets.MASK
    assert "direct connection" in ep.label


def test_a_url_without_a_password_is_shown_whole_and_one_with_masks_only_the_password(monkeypatch):
    monkeypatch.setenv("NOPW_DB", "postgresql://app@nopw.example.com:5432/orders?sslmode=require")
    ep = endpoints.resolve("env:NOPW_DB", ctx())
    shown = f"copy {ep.display()} -> target"
    assert secrets.redact(shown) == "copy postgresql://app@nopw.example.com:5432/orders?sslmode=require -> target"
    monkeypatch.setenv("PW_DB", "postgresql://app:hunter2-secret@pw.example.com:5432/orders")
    ep = endpoints.resolve("env:PW_DB", ctx())
    assert secrets.redact(ep.display()) == f"postgresql://app:{secrets.MASK}@pw.example.com:5432/orders"
    assert "hunter2-secret" not in secrets.redact(f"failed: {ep.url()}")
