"""Target bindings: the named platforms a runbook's steps refer to.

    targets:
      old: {platform: aws-ecs, region: us-east-1, cluster: "{{ params.env }}", service: api}
      new: {platform: do-app, app: "api-{{ params.env }}"}

Each `platform` has a model here; unknown platforms and unknown keys are load-time errors. Values
may be Jinja2 templates over `params` and `env`. A platform adapter (`bot.platforms.*`) is built
from the validated model, never from a raw dict.

The lock key of a target (:meth:`TargetBase.lock_key`) names the environment it points at, so two
runs cannot act on the same service at once.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class TargetBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: str
    # Fields that identify the environment (the rest, like an endpoint override, do not).
    identity_fields: ClassVar[tuple[str, ...]] = ()

    def lock_key(self) -> str:
        fields = self.identity_fields or tuple(f for f in type(self).model_fields if f != "platform")
        ident = {f: getattr(self, f) for f in fields}
        return f"{self.platform}:" + json.dumps(ident, sort_keys=True, default=str)


class AwsTargetMixin(BaseModel):
    region: str = "us-east-1"
    role_arn: str | None = Field(None, description="Role to assume for this target (optional)")
    endpoint_url: str | None = Field(None, description="Override the AWS endpoint (tests, LocalStack)")
    profile: str | None = None


class AwsEcsTarget(TargetBase, AwsTargetMixin):
    """An ECS service: its task definition is the environment the process gets."""

    platform: Literal["aws-ecs"] = "aws-ecs"
    cluster: str
    service: str
    database: str | None = Field(None, description="RDS instance or Aurora cluster id of this service's database")
    container: str | None = Field(None, description="Container whose environment env.diff/env.set use (default: all / the only essential one)")
    identity_fields: ClassVar[tuple[str, ...]] = ("region", "cluster", "service")


class AwsRoute53Target(TargetBase, AwsTargetMixin):
    platform: Literal["aws-route53"] = "aws-route53"
    zone: str = Field(description="Hosted zone id or zone name (example.com.)")
    nameservers: list[str] = Field(default_factory=list, description="Authoritative servers to ask (`host[:port]`) "
                                   "instead of the zone's NS records: private or rehearsal zones")
    identity_fields: ClassVar[tuple[str, ...]] = ("zone",)


class AwsS3Target(TargetBase, AwsTargetMixin):
    platform: Literal["aws-s3"] = "aws-s3"
    bucket: str
    prefix: str = ""
    identity_fields: ClassVar[tuple[str, ...]] = ("endpoint_url", "bucket", "prefix")


class AwsAlbTarget(TargetBase, AwsTargetMixin):
    platform: Literal["aws-alb"] = "aws-alb"
    load_balancer: str = Field(description="`app/<name>/<id>` or the full ARN")
    log_group: str | None = None
    identity_fields: ClassVar[tuple[str, ...]] = ("region", "load_balancer")


class DoAppTarget(TargetBase):
    """A DigitalOcean App Platform app (by name or id), optionally one component of it."""

    platform: Literal["do-app"] = "do-app"
    app: str
    component: str | None = None
    database: str | None = Field(None, description="DigitalOcean database cluster name or id")
    identity_fields: ClassVar[tuple[str, ...]] = ("app", "component")


class DoDomainTarget(TargetBase):
    platform: Literal["do-domain"] = "do-domain"
    domain: str
    nameservers: list[str] = Field(default_factory=list, description="Authoritative servers to ask (`host[:port]`) "
                                   "instead of the zone's NS records: private or rehearsal zones")
    identity_fields: ClassVar[tuple[str, ...]] = ("domain",)


class DoSpacesTarget(TargetBase):
    platform: Literal["do-spaces"] = "do-spaces"
    bucket: str
    prefix: str = ""
    region: str = "nyc3"
    endpoint_url: str | None = Field(None, description="Override the Spaces endpoint (else `SPACES_ENDPOINT_URL`, "
                                     "else https://<region>.digitaloceanspaces.com)")
    identity_fields: ClassVar[tuple[str, ...]] = ("region", "bucket", "prefix")


class DoDatabaseTarget(TargetBase):
    platform: Literal["do-database"] = "do-database"
    cluster: str
    database: str = "defaultdb"
    identity_fields: ClassVar[tuple[str, ...]] = ("cluster", "database")


class HerokuTarget(TargetBase):
    platform: Literal["heroku"] = "heroku"
    app: str
    identity_fields: ClassVar[tuple[str, ...]] = ("app",)


class FlyTarget(TargetBase):
    platform: Literal["fly"] = "fly"
    app: str
    identity_fields: ClassVar[tuple[str, ...]] = ("app",)


class PostgresTarget(TargetBase):
    """A database reached by URL; `url_env` names the environment variable that holds it."""

    platform: Literal["postgres"] = "postgres"
    url_env: str = Field(description="Name of the environment variable holding the connection URL")
    identity_fields: ClassVar[tuple[str, ...]] = ("url_env",)


class FileTarget(TargetBase):
    """A dotenv, JSON or YAML file of variables: exports, and the sandbox."""

    platform: Literal["file"] = "file"
    path: str
    identity_fields: ClassVar[tuple[str, ...]] = ("path",)


class HttpTarget(TargetBase):
    """A service reached over HTTP (health checks, probes)."""

    platform: Literal["http"] = "http"
    url: str
    host: str | None = Field(None, description="Host header to send (when the URL is an IP or the edge)")
    identity_fields: ClassVar[tuple[str, ...]] = ("url", "host")


TARGETS: dict[str, type[TargetBase]] = {
    "aws-ecs": AwsEcsTarget,
    "aws-route53": AwsRoute53Target,
    "aws-s3": AwsS3Target,
    "aws-alb": AwsAlbTarget,
    "do-app": DoAppTarget,
    "do-domain": DoDomainTarget,
    "do-spaces": DoSpacesTarget,
    "do-database": DoDatabaseTarget,
    "heroku": HerokuTarget,
    "fly": FlyTarget,
    "postgres": PostgresTarget,
    "file": FileTarget,
    "http": HttpTarget,
}


def register_target(name: str, model: type[TargetBase]) -> None:
    TARGETS[name] = model


def target_model(platform: str) -> type[TargetBase] | None:
    return TARGETS.get(platform)


def parse_target(raw: dict[str, Any]) -> TargetBase:
    """Validate a rendered target mapping (raises pydantic.ValidationError or KeyError)."""
    model = TARGETS[raw["platform"]]
    return model.model_validate(raw)
