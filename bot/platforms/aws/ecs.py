"""ECS: the environment a service's tasks really get, and changing it by a new revision.

    from bot.platforms.aws import ecs
    env = ecs.read_env(target)                 # SourceEnv: environment + secrets + environmentFiles
    env.values["WORKERS"].fingerprint(); env.commands   # ['sh -c uvicorn ... --workers ${WORKERS:-1}']
    before, after = ecs.set_env(target, {"WORKERS": "4"})   # new revision + update_service
    ecs.use_task_definition(target, before)    # rollback: the old revision, exactly as it was

The service's *current* task definition is the truth (`describe_services` -> `taskDefinition` ->
`describe_task_definition`), not the family's latest revision, which may never have been deployed.
For each container (or the one the target names) the environment is assembled the way the ECS
agent does it: `environmentFiles` (S3) first, then `environment`, which wins over the files, then
`secrets`, resolved in batches through Secrets Manager / SSM (`bot.platforms.aws.secrets`).

`describe_services` reports an unknown service in `failures` with HTTP 200 rather than an error;
that is turned into `NotFound` here, so a typo in a runbook cannot read as "no variables".

Changing the environment never edits a revision (they are immutable): `set_env` registers a new
revision that differs only in the container's `environment`, points the service at it, and returns
the previous ARN. Rollback points the service back at that ARN: the platform keeps the old
revision, so nothing about the old values needs to be stored by us.
"""

from __future__ import annotations

from typing import Any

from bot import secrets
from bot.platforms import aws, errors
from bot.platforms.aws import s3
from bot.platforms.aws import secrets as aws_secrets
from bot.platforms.aws.iam import WRITE, Grant, grants
from bot.platforms.envfile import parse_ecs_env_file
from bot.platforms.envvalue import EnvValue, SourceEnv


# IAM actions of the calls below: reading the service's task definition (and what it references),
# and a new revision plus update_service. RegisterTaskDefinition copies the definition's tags
# (ecs:TagResource) and its task/execution roles (iam:PassRole, only to ECS tasks).
IAM_READ = ("ecs:DescribeServices", "ecs:DescribeTaskDefinition")
IAM_WRITE = ("ecs:RegisterTaskDefinition", "ecs:UpdateService", "ecs:TagResource")
PASS_ROLE = Grant("iam:PassRole", WRITE, "*", '{"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}',
                  "a new revision keeps the task and execution roles: ECS must be allowed to pass them")


def iam_env_grants(target: Any, access: str) -> list[Grant]:
    """What reading (and, for `write`, changing) a service's environment calls."""
    found = grants(IAM_READ) + grants(aws_secrets.IAM_READ, note="only for task definitions with `secrets`; "
                                      "a customer managed KMS key also needs kms:Decrypt on it")
    found += grants(s3.IAM_ENV_FILE_READ, note="only for task definitions with S3 `environmentFiles`")
    if access == WRITE:
        found += grants(IAM_WRITE, WRITE) + [PASS_ROLE]
    return found


def _where(target: Any) -> str:
    return f"service {target.cluster}/{target.service}"


def service_task_definition(target: Any) -> str:
    """The ARN of the task definition the service currently runs."""
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.describe_services", _where(target)):
        response = ecs.describe_services(cluster=target.cluster, services=[target.service])
    services = [s for s in response.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        reasons = ", ".join(f.get("reason", "?") for f in response.get("failures", [])) or "INACTIVE"
        raise errors.NotFound(aws.PLATFORM, "ecs.describe_services", _where(target), reasons)
    return str(services[0]["taskDefinition"])


def describe_task_definition(target: Any, arn: str) -> dict[str, Any]:
    """The task definition (with its tags under `tags`)."""
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.describe_task_definition", f"task definition {arn}"):
        response = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    definition = dict(response["taskDefinition"])
    if response.get("tags"):
        definition["tags"] = response["tags"]
    return definition


def _containers(target: Any, definition: dict[str, Any]) -> list[dict[str, Any]]:
    containers = definition.get("containerDefinitions", [])
    wanted = getattr(target, "container", None)
    if wanted:
        chosen = [c for c in containers if c.get("name") == wanted]
        if not chosen:
            names = ", ".join(c.get("name", "?") for c in containers)
            raise errors.NotFound(aws.PLATFORM, "ecs.describe_task_definition", f"container {wanted}",
                                  f"task definition {definition.get('taskDefinitionArn')} has: {names}")
        return chosen
    return containers


def read_env(target: Any) -> SourceEnv:
    """The environment of the service's current task definition (all containers, or the named one)."""
    arn = service_task_definition(target)
    definition = describe_task_definition(target, arn)
    containers = _containers(target, definition)
    label = arn.rsplit("/", 1)[-1]
    env = SourceEnv(platform="aws-ecs", resource=f"{_where(target)} ({label})")

    refs = [s["valueFrom"] for c in containers for s in c.get("secrets", [])]
    resolved = aws_secrets.resolve(target, refs) if refs else {}

    for container in containers:
        cname = container.get("name", "?")
        merged: dict[str, EnvValue] = {}
        for env_file in container.get("environmentFiles", []):
            if env_file.get("type", "s3") != "s3":
                env.notes.append(f"{cname}: environment file of type {env_file.get('type')} not read")
                continue
            bucket, key = s3.parse_arn(env_file["value"])
            for name, value in parse_ecs_env_file(s3.read_text(target, bucket, key)).items():
                merged[name] = EnvValue(name, value, origin=f"{cname} environment file s3://{bucket}/{key}")
        # One registration per container: each call recompiles the mask pattern.
        # Plain `environment` entries: secret only when the name says so (secrets come from `secrets`).
        secrets.register_plain_many((str(item.get("name", "")), str(item.get("value", "")))
                                    for item in container.get("environment", []))
        for item in container.get("environment", []):
            value = str(item.get("value", ""))
            merged[item["name"]] = EnvValue(item["name"], value, origin=f"{cname} environment")
        for item in container.get("secrets", []):
            ref = aws_secrets.parse_ref(item["valueFrom"])
            merged[item["name"]] = EnvValue(item["name"], resolved[item["valueFrom"]], secret=True,
                                            origin=f"{cname} {ref.service} {ref.secret_id}")
        for name, value in merged.items():
            earlier = env.values.get(name)
            if earlier is not None and earlier.fingerprint() != value.fingerprint():
                env.notes.append(f"{name} differs between containers ({earlier.origin} / {value.origin}); "
                                 "name a `container` on the target to pick one")
            env.values.setdefault(name, value)
        command = " ".join(str(p) for p in (container.get("entryPoint") or []) + (container.get("command") or []))
        if command:
            env.commands.append(command)
    return env


def _writable_container(target: Any, definition: dict[str, Any]) -> dict[str, Any]:
    containers = _containers(target, definition)
    if len(containers) == 1:
        return containers[0]
    essential = [c for c in containers if c.get("essential", True)]
    if len(essential) == 1:
        return essential[0]
    raise errors.InvalidRequest(aws.PLATFORM, "ecs.register_task_definition", _where(target),
                                "the task definition has several essential containers; set `container` on the target")


def _register_kwargs(target: Any, definition: dict[str, Any]) -> dict[str, Any]:
    ecs = aws.client(target, "ecs")
    accepted = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members
    return {k: v for k, v in definition.items() if k in accepted}


def set_env(target: Any, values: dict[str, str]) -> tuple[str, str]:
    """Register a revision with `values` set in the container's `environment`; point the service at it.

    Returns (previous ARN, new ARN). Nothing else of the task definition changes.
    """
    previous = service_task_definition(target)
    definition = describe_task_definition(target, previous)
    container = _writable_container(target, definition)
    environment = [dict(e) for e in container.get("environment", []) if e["name"] not in values]
    environment.extend({"name": n, "value": v} for n, v in values.items())
    container["environment"] = environment
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.register_task_definition", f"family {definition.get('family')}"):
        registered = ecs.register_task_definition(**_register_kwargs(target, definition))
    new_arn = str(registered["taskDefinition"]["taskDefinitionArn"])
    use_task_definition(target, new_arn)
    return previous, new_arn


def use_task_definition(target: Any, arn: str) -> None:
    """Point the service at a task definition revision (a deploy; ECS rolls the tasks)."""
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.update_service", f"{_where(target)} -> {arn}"):
        ecs.update_service(cluster=target.cluster, service=target.service, taskDefinition=arn)


class EcsEnv:
    """`EnvSource`/`EnvSink` of an ECS service: task-definition revisions are immutable and kept by
    ECS, so the previous revision's ARN is all an exact rollback needs."""

    how = "a new task definition revision and update_service"
    iam_grants = staticmethod(iam_env_grants)
    plain_only = True
    restores_overwritten = True

    def __init__(self, target: Any) -> None:
        self.target = target

    def read(self) -> SourceEnv:
        return read_env(self.target)

    def set(self, values: dict[str, str], secret_names: set[str]) -> tuple[dict[str, Any], str]:
        previous, new = set_env(self.target, dict(values))
        return ({"previous_task_definition": previous, "task_definition": new},
                f"registered {new.rsplit('/', 1)[-1]} with {', '.join(values)}; service updated")

    def plan_undo(self, undo: dict[str, Any], name: str) -> str:
        return f"point {name} back at {undo.get('previous_task_definition')}"

    def undo(self, undo: dict[str, Any]) -> str:
        if not undo.get("previous_task_definition"):
            return "nothing to undo"
        use_task_definition(self.target, undo["previous_task_definition"])
        return f"service back on {undo['previous_task_definition'].rsplit('/', 1)[-1]}"

    def verify_undo(self, undo: dict[str, Any]) -> tuple[bool, str] | None:
        if not undo.get("previous_task_definition"):
            return None
        current = service_task_definition(self.target)
        return current == undo["previous_task_definition"], f"service runs {current.rsplit('/', 1)[-1]}"
