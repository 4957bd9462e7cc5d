"""Resolve a runbook's `source:`/`target:` into an :class:`Endpoint`, credentials kept in memory.

Accepted forms (the `with:` block of a db.copy step):

    source: postgresql://user:pw@host/db     # a URL (better: keep it out of the runbook, use env:)
    source: env:OLD_DATABASE_URL             # the URL is in this environment variable
    source: {env: OLD_DATABASE_URL}
    source: old                              # a target; `old.database` reads the same
    source: {target: old, password_env: RDS_PASSWORD, user: app, database: orders, sslmode: require}
    app_url: {target: new-db, pool: api-pool} # a DigitalOcean cluster's connection pool, by name

What a target resolves to:

- `aws-ecs` with `database:` -> RDS `describe_db_instances`, else `describe_db_clusters` (the Aurora
  writer); the password is read from `password_env` (RDS never returns one).
- `do-database` (and `do-app` with `database:`) -> the cluster's direct `connection` from
  `databases.get_cluster`, never a pool; `password_env`/`user` override the default user.
- `heroku` -> the app's `DATABASE_URL` config var (sslmode=require added: Heroku insists).
- `postgres` -> the URL in the environment variable `url_env`.
"""

from __future__ import annotations

from typing import Any

from bot import config, secrets
from bot.platforms import errors
from bot.platforms.postgres.connect import PLATFORM, Endpoint, parse_url


class EndpointError(Exception):
    """The runbook's source/target cannot be resolved; the message says which field and why."""


def describe_spec(spec: Any) -> str:
    """A safe one-line description of a spec (never the URL's password)."""
    if isinstance(spec, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(spec.items()) if k in ("env", "target", "database", "user"))
    text = str(spec)
    if "://" in text or "=" in text:
        return secrets.redact(text)
    return text


def _env_url(name: str, field: str) -> Endpoint:
    value = config.get(name)
    if not value:
        raise EndpointError(f"{field}: environment variable {name} is not set")
    return parse_url(value, label=f"env:{name}")


def resolve(spec: Any, ctx: Any, *, field: str = "source") -> Endpoint:
    """Turn a spec into an endpoint; raises EndpointError (bad spec) or a platform error (lookup failed).

    `RUNBOOK_BOT_PG_HOSTADDR` (`name=address,...`) gives a host name the address to connect to (libpq's
    `hostaddr`): a tunnel, a bastion's forward, or a rehearsal world whose RDS names do not resolve.
    The name stays the one shown and checked (TLS, plans).
    """
    import dataclasses

    ep = _resolve(spec, ctx, field=field)
    address = config.get_map("RUNBOOK_BOT_PG_HOSTADDR").get(ep.host.lower())
    if address and address.startswith("/"):  # a Unix socket folder (an embedded server): libpq's host
        ep = dataclasses.replace(ep, host=address)
    elif address and "hostaddr" not in ep.params:
        ep = dataclasses.replace(ep, params={**ep.params, "hostaddr": address})
    return ep


def _resolve(spec: Any, ctx: Any, *, field: str) -> Endpoint:
    if isinstance(spec, dict):
        opts = dict(spec)
        if "env" in opts:
            return _apply_overrides(_env_url(str(opts["env"]), field), opts, field)
        if "url" in opts:
            return _apply_overrides(parse_url(str(opts["url"]), label=field), opts, field)
        if "target" in opts:
            return _from_target(str(opts["target"]), opts, ctx, field)
        raise EndpointError(f"{field}: give one of `env`, `url` or `target` (got {', '.join(sorted(opts))})")
    text = str(spec).strip()
    if text.startswith("env:"):
        return _env_url(text[4:].strip(), field)
    if "://" in text or "=" in text:
        return parse_url(text, label=field)
    name = text[: -len(".database")] if text.endswith(".database") else text
    return _from_target(name, {}, ctx, field)


def _apply_overrides(ep: Endpoint, opts: dict[str, Any], field: str) -> Endpoint:
    import dataclasses

    changes: dict[str, Any] = {}
    if opts.get("user"):
        changes["user"] = str(opts["user"])
    if opts.get("database"):
        changes["dbname"] = str(opts["database"])
    if opts.get("password_env"):
        password = config.get(str(opts["password_env"]))
        if not password:
            raise EndpointError(f"{field}: environment variable {opts['password_env']} (password_env) is not set")
        secrets.register(password)
        changes["password"] = password
    if opts.get("sslmode"):
        changes["params"] = {**ep.params, "sslmode": str(opts["sslmode"])}
    return dataclasses.replace(ep, **changes) if changes else ep


def iam_grants(target: Any) -> list[Any]:
    """The IAM grants resolving this target as an endpoint needs (`_from_target`): an aws-ecs
    target's `database` is looked up in RDS; other platforms need none."""
    if getattr(target, "platform", "") != "aws-ecs" or not getattr(target, "database", None):
        return []
    from bot.platforms.aws import rds
    from bot.platforms.aws.iam import grants

    return grants(rds.IAM_READ)


def _from_target(name: str, opts: dict[str, Any], ctx: Any, field: str) -> Endpoint:
    try:
        target = ctx.target(name)
    except KeyError as exc:
        raise EndpointError(f"{field}: {exc.args[0]}") from None
    platform = getattr(target, "platform", "")
    if platform == "postgres":
        return _apply_overrides(_env_url(target.url_env, field), opts, field)
    if platform == "aws-ecs":
        if not target.database:
            raise EndpointError(f"{field}: target {name} (aws-ecs) has no `database` (the RDS instance or cluster id)")
        from bot.platforms.aws import rds

        info = rds.describe_endpoint(target, target.database)
        if not opts.get("password_env"):
            raise EndpointError(f"{field}: RDS does not return passwords; add `password_env: NAME` naming the "
                                f"environment variable that holds the password of {info.user}")
        ep = Endpoint(host=info.host, port=info.port, dbname=info.dbname, user=info.user,
                      label=f"rds {info.kind} {info.identifier}")
        return _apply_overrides(ep, opts, field)
    if platform in ("do-database", "do-app"):
        cluster = target.cluster if platform == "do-database" else target.database
        if not cluster:
            raise EndpointError(f"{field}: target {name} (do-app) has no `database` (the cluster name or id)")
        from bot.platforms.digitalocean import databases

        if opts.get("pool"):  # the pool an app is given (checked for the pooler, never copied through)
            conn = databases.pool_connection(cluster, str(opts["pool"]))
            dbname, label = conn.get("database"), f"digitalocean cluster {cluster} pool {conn.get('pool')}"
        else:
            conn = databases.direct_connection(cluster)
            dbname = getattr(target, "database", None) if platform == "do-database" else None
            label = f"digitalocean cluster {cluster} (direct connection)"
        ep = Endpoint(host=str(conn["host"]), port=int(conn.get("port") or 25060),
                      dbname=str(dbname or conn.get("database") or "defaultdb"), user=str(conn.get("user") or "doadmin"),
                      password=conn.get("password"), params={"sslmode": "require"} if conn.get("ssl", True) else {},
                      label=label)
        return _apply_overrides(ep, opts, field)
    if platform == "heroku":
        from bot.platforms.heroku import database

        url = database.database_url(target.app)
        ep = parse_url(url, label=f"heroku {target.app} DATABASE_URL")
        if "sslmode" not in ep.params:
            import dataclasses

            ep = dataclasses.replace(ep, params={**ep.params, "sslmode": "require"})
        return _apply_overrides(ep, opts, field)
    raise EndpointError(f"{field}: target {name} is a {platform!r} target, which has no PostgreSQL database "
                        f"this step can resolve (use a URL in an environment variable: `env:NAME`)")


__all__ = ["EndpointError", "resolve", "describe_spec", "PLATFORM", "errors"]
