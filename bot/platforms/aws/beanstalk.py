"""AWS Elastic Beanstalk (`aws-beanstalk`): environment properties, scaling, health.

    targets:
      new: {platform: aws-beanstalk, region: eu-west-1, application: pinecast, environment: pinecast-prod}

- Environment properties (`EnvSource`/`EnvSink`) are the option settings of namespace
  `aws:elasticbeanstalk:application:environment` (seed 002: "copy all of the Heroku environment
  variables into the Beanstalk environment configuration"). A write is one `UpdateEnvironment`;
  the botocore waiter `environment_updated` waits for the configuration deploy (minutes: the seed's
  "configuration changes are notably slower than Heroku"). Values are never stored: rollback removes
  the names that were added (`OptionsToRemove`); overwritten values are not restorable, and the plan
  says so.
- Scaling (`Scaler`) is the Auto Scaling group's min/max through the environment's own options
  (`aws:autoscaling:asg` MinSize/MaxSize). Editing the ASG directly would be undone by Beanstalk at
  its next configuration deploy, so the options are the only honest handle. `count` is MinSize
  (and MaxSize when it would be below).
- Health (`Health`): `DescribeEnvironmentHealth` (enhanced health): Green/Ok is healthy.
- The load balancer's metrics come from the `aws-alb` watch source, the same ALB signals as ECS.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from bot import config, secrets
from bot.platforms import aws, errors
from bot.platforms.capabilities import RemovesAddedNames, poll_delay
from bot.platforms.envvalue import EnvValue, SourceEnv
from bot.platforms.target_base import AwsTargetMixin, TargetBase

ENV_NAMESPACE = "aws:elasticbeanstalk:application:environment"
ASG_NAMESPACE = "aws:autoscaling:asg"

# IAM actions of the calls below, per adapter. `update` is UpdateEnvironment plus the waiter's
# DescribeEnvironments. Beanstalk carries out a configuration deploy with the caller's own rights on
# CloudFormation, Auto Scaling, EC2 and S3: those are not listed here (see UPDATE_NOTE).
IAM_OPTIONS_READ = ("elasticbeanstalk:DescribeConfigurationSettings",)
IAM_UPDATE = ("elasticbeanstalk:UpdateEnvironment", "elasticbeanstalk:DescribeEnvironments")
IAM_HEALTH = ("elasticbeanstalk:DescribeEnvironmentHealth",)
UPDATE_NOTE = ("a configuration deploy runs with the caller's own rights: the environment's CloudFormation "
               "stack, Auto Scaling group and EC2 resources need them too (AWS's managed policy "
               "AdministratorAccess-AWSElasticBeanstalk, or a scoped copy)")


class BeanstalkTarget(TargetBase, AwsTargetMixin):
    platform: Literal["aws-beanstalk"] = "aws-beanstalk"
    application: str = Field(description="Beanstalk application name")
    environment: str = Field(description="Beanstalk environment name")
    identity_fields: ClassVar[tuple[str, ...]] = ("region", "application", "environment")


def _where(target: Any) -> str:
    return f"environment {target.application}/{target.environment}"


def _client(target: Any) -> Any:
    return aws.client(target, "elasticbeanstalk")


def describe(target: Any) -> dict[str, Any]:
    with aws.translate("elasticbeanstalk.describe_environments", _where(target)):
        found = _client(target).describe_environments(ApplicationName=target.application,
                                                      EnvironmentNames=[target.environment],
                                                      IncludeDeleted=False)["Environments"]
    live = [e for e in found if e.get("EnvironmentName") == target.environment
            and e.get("Status") not in ("Terminated", "Terminating")]
    if not live:
        raise errors.NotFound(aws.PLATFORM, "elasticbeanstalk.describe_environments", _where(target),
                              "no such (live) environment")
    return live[0]


def option_settings(target: Any, namespace: str) -> dict[str, str]:
    with aws.translate("elasticbeanstalk.describe_configuration_settings", _where(target)):
        settings = _client(target).describe_configuration_settings(
            ApplicationName=target.application, EnvironmentName=target.environment)["ConfigurationSettings"]
    options = settings[0].get("OptionSettings", []) if settings else []
    return {o["OptionName"]: o.get("Value", "") for o in options if o.get("Namespace") == namespace}


def update(target: Any, *, set_options: dict[str, dict[str, str]] | None = None,
           remove: dict[str, list[str]] | None = None, timeout: float = 1200) -> None:
    """One UpdateEnvironment, then the `environment_updated` waiter (Ready again, or an error)."""
    settings = [{"Namespace": ns, "OptionName": k, "Value": v} for ns, kv in (set_options or {}).items()
                for k, v in kv.items()]
    removals = [{"Namespace": ns, "OptionName": k} for ns, names in (remove or {}).items() for k in names]
    client = _client(target)
    with aws.translate("elasticbeanstalk.update_environment", _where(target)):
        client.update_environment(ApplicationName=target.application, EnvironmentName=target.environment,
                                  OptionSettings=settings, OptionsToRemove=removals)
    # BEANSTALK_POLL_SECONDS: how often the waiter asks (default: up to 15 s for long timeouts).
    delay = int(config.get("BEANSTALK_POLL_SECONDS") or poll_delay(timeout))
    with aws.translate("elasticbeanstalk.wait.environment_updated", _where(target)):
        client.get_waiter("environment_updated").wait(
            ApplicationName=target.application, EnvironmentNames=[target.environment],
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout / delay))})


class BeanstalkEnv(RemovesAddedNames):
    """`EnvSource`/`EnvSink` over the environment properties."""

    how = "an UpdateEnvironment of the environment properties (a configuration deploy)"
    iam_read, iam_write, iam_note = IAM_OPTIONS_READ, IAM_UPDATE, UPDATE_NOTE
    plain_only = False  # Beanstalk shows these values in its console, as Heroku does config vars
    restores_overwritten = False

    def __init__(self, target: Any) -> None:
        self.target = target

    def read(self) -> SourceEnv:
        values = option_settings(self.target, ENV_NAMESPACE)
        secrets.register_many(values.values())
        env = SourceEnv(platform="aws-beanstalk", resource=_where(self.target))
        env.values = {n: EnvValue(n, v, secret=True, origin="environment property") for n, v in values.items()}
        return env

    def set(self, values: dict[str, str], secret_names: set[str]) -> tuple[dict[str, Any], str]:
        secrets.register_many(values.values())
        update(self.target, set_options={ENV_NAMESPACE: dict(values)})
        return {}, f"environment properties set: {', '.join(values)}"

    def undo(self, undo: dict[str, Any]) -> str:
        if not undo.get("added"):
            return "nothing to undo"
        update(self.target, remove={ENV_NAMESPACE: list(undo["added"])})
        return f"removed {', '.join(undo['added'])} from the environment properties"

    def verify_undo(self, undo: dict[str, Any]) -> tuple[bool, str] | None:
        return None  # the step checks that the added names are gone


class BeanstalkScaler:
    """`Scaler` over the environment's Auto Scaling options (MinSize/MaxSize)."""

    product = "Elastic Beanstalk"
    iam_read, iam_write, iam_note = IAM_OPTIONS_READ + IAM_HEALTH, IAM_UPDATE, UPDATE_NOTE
    # An Auto Scaling group behind Beanstalk has MaxSize >= 1: the warm standby is one instance.
    min_count = 1
    refuse_below = ("Elastic Beanstalk keeps at least one instance (the Auto Scaling MaxSize minimum is 1): "
                    "scale to 1 for a warm standby")

    def __init__(self, target: Any, process_type: str = "web") -> None:
        self.target = target
        self.label = f"Beanstalk environment {target.environment} instances"

    def count(self) -> int:
        return int(option_settings(self.target, ASG_NAMESPACE).get("MinSize", "1"))

    def set(self, count: int) -> None:
        current = option_settings(self.target, ASG_NAMESPACE)
        wanted = {"MinSize": str(count)}
        if int(current.get("MaxSize", count)) < count:
            wanted["MaxSize"] = str(count)
        update(self.target, set_options={ASG_NAMESPACE: wanted})

    def wait_healthy(self, waiter: Any, count: int, timeout: float) -> None:
        waiter.progress(0, None, f"waiting for {self.label} to settle at {count}")
        # `update` already waited for the environment to be Ready; enhanced health says whether it serves.
        ok, why = BeanstalkHealth(self.target).health()
        if count > 0 and not ok:
            raise errors.Unavailable(aws.PLATFORM, "elasticbeanstalk.describe_environment_health",
                                     _where(self.target), why)


class BeanstalkHealth:
    """`Health`: enhanced health (`DescribeEnvironmentHealth`), Green/Ok is healthy."""

    iam_read = IAM_HEALTH

    def __init__(self, target: Any) -> None:
        self.target = target

    def health(self) -> tuple[bool, str]:
        with aws.translate("elasticbeanstalk.describe_environment_health", _where(self.target)):
            found = _client(self.target).describe_environment_health(
                EnvironmentName=self.target.environment, AttributeNames=["Color", "HealthStatus", "Causes"])
        color, status = found.get("Color", "Grey"), found.get("HealthStatus", "Unknown")
        causes = "; ".join(found.get("Causes") or [])
        return color == "Green" and status in ("Ok", "Info"), f"{color}/{status}" + (f": {causes}" if causes else "")
