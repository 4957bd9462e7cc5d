"""IAM grants: the actions an AWS adapter calls, declared next to the calls, as data.

    from bot.platforms.aws.iam import Grant, grants
    IAM_READ = ("ecs:DescribeServices",)                 # in the adapter module, beside the calls
    grants(IAM_READ, "read")                             # [Grant("ecs:DescribeServices", "read", "*")]
    Grant("route53:ChangeResourceRecordSets", "write", "arn:aws:route53:::hostedzone/Z1")

`access` is "read" for what plan and verify call, "write" for what apply and rollback call (they
also read). `bot.steps.iam` collects the grants a runbook's steps need and
`bot.platforms.aws.iam_policy` turns them into one least-privilege policy document. An adapter
whose actions can name a resource narrower than "*" has `iam_grants(target, access)`; the others
are read from their class attributes `iam_read` / `iam_write`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

READ, WRITE = "read", "write"


@dataclass(frozen=True, order=True)
class Grant:
    """One action on one resource; `condition` is a JSON object text (hashable), `note` says why."""

    action: str
    access: str = READ
    resource: str = "*"
    condition: str = ""
    note: str = ""

    @property
    def service(self) -> str:
        return self.action.split(":", 1)[0]


def grants(actions: Iterable[str], access: str = READ, resource: str = "*", note: str = "") -> list[Grant]:
    return [Grant(a, access, resource, note=note) for a in actions]


def adapter_grants(adapter_cls: type, target: object, access: str) -> list[Grant]:
    """What an adapter class declares for `target`: its `iam_grants` hook, else `iam_read`/`iam_write`."""
    hook = getattr(adapter_cls, "iam_grants", None)
    if hook is not None:
        return list(hook(target, access))
    found = grants(getattr(adapter_cls, "iam_read", ()), READ)
    if access == WRITE:
        found += grants(getattr(adapter_cls, "iam_write", ()), WRITE, note=getattr(adapter_cls, "iam_note", ""))
    return found


def literal_or_wildcard(value: str) -> str:
    """A runbook value for a resource ARN: templates (`{{ params.env }}`) become `*`, so
    `models-{{ params.env }}` narrows to `models-*` whatever the run's parameters are."""
    return re.sub(r"\{\{.*?\}\}", "*", value)
