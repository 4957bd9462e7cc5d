"""ECS service size: read desired/running counts, set the desired count, wait until stable.

    from bot.platforms.aws import ecs_scaling
    before = ecs_scaling.counts(target)                   # {"desired": 2, "running": 2, "pending": 0}
    ecs_scaling.set_desired(target, 0)
    ecs_scaling.wait_stable(target, timeout=600)

Scaling to zero keeps the service, its task definition and its load balancer wiring: a warm standby
that a rollback brings back with one call. Nothing here deletes a service.
"""

from __future__ import annotations

import math
from typing import Any

from bot.platforms import aws, errors

# IAM actions the calls below make (bot.steps.iam collects them): describe + the waiter read,
# update_service writes.
IAM_READ = ("ecs:DescribeServices",)
IAM_WRITE = ("ecs:UpdateService",)


def _resource(target: Any) -> str:
    return f"service {target.cluster}/{target.service}"


def describe(target: Any) -> dict[str, Any]:
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.describe_services", _resource(target)):
        response = ecs.describe_services(cluster=target.cluster, services=[target.service])
    services = response.get("services", [])
    if not services or services[0].get("status") == "INACTIVE":
        reason = "; ".join(f"{f.get('arn', '')}: {f.get('reason', '')}" for f in response.get("failures", []))
        raise errors.NotFound(aws.PLATFORM, "ecs.describe_services", _resource(target), reason or "no such service")
    return services[0]


def counts(target: Any) -> dict[str, int]:
    service = describe(target)
    return {"desired": int(service.get("desiredCount", 0)), "running": int(service.get("runningCount", 0)),
            "pending": int(service.get("pendingCount", 0))}


def set_desired(target: Any, count: int) -> None:
    if count < 0:
        raise ValueError("desired count cannot be negative")
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.update_service", _resource(target)):
        ecs.update_service(cluster=target.cluster, service=target.service, desiredCount=count)


def wait_stable(target: Any, *, timeout: float, delay: int = 15) -> None:
    """botocore's `services_stable` waiter (one deployment, running == desired), bounded by `timeout`."""
    delay = max(1, int(delay))
    attempts = max(1, math.ceil(timeout / delay))
    ecs = aws.client(target, "ecs")
    with aws.translate("ecs.wait.services_stable", _resource(target)):
        ecs.get_waiter("services_stable").wait(
            cluster=target.cluster, services=[target.service],
            WaiterConfig={"Delay": delay, "MaxAttempts": attempts})


class EcsScaler:
    """The `Scaler` capability of an ECS service (desiredCount, `services_stable`)."""

    product = "ECS"
    iam_read, iam_write = IAM_READ, IAM_WRITE
    min_count = 0
    refuse_below = ""

    def __init__(self, target: Any, process_type: str = "web") -> None:
        self.target = target
        self.label = f"ECS service {target.cluster}/{target.service}"

    def count(self) -> int:
        return counts(self.target)["desired"]

    def set(self, count: int) -> None:
        set_desired(self.target, count)

    def wait_healthy(self, waiter: Any, count: int, timeout: float) -> None:
        from bot.platforms.capabilities import poll_delay

        waiter.progress(0, None, f"waiting for {self.label} to settle at {count}")
        wait_stable(self.target, timeout=timeout, delay=poll_delay(timeout))
