"""A least-privilege IAM policy document from a set of grants.

    from bot.platforms.aws.iam import Grant
    from bot.platforms.aws.iam_policy import document
    document([Grant("route53:GetHostedZone", "read", "arn:aws:route53:::hostedzone/Z1"),
              Grant("route53:ChangeResourceRecordSets", "write", "arn:aws:route53:::hostedzone/Z1")])
    # {"Version": "2012-10-17", "Statement": [{"Sid": "Route53Read", "Effect": "Allow",
    #   "Action": ["route53:GetHostedZone"], "Resource": "arn:aws:route53:::hostedzone/Z1"}, ...]}

One statement per service, access ("Read": what plan and verify call, "Write": what apply and
rollback add), condition and set of resources; actions and statements are sorted, so the same
runbook always gives the same document (a reviewer can diff two). An action granted on "*" and on
a narrower resource keeps only "*": the narrower grant adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from bot.platforms.aws.iam import Grant

VERSION = "2012-10-17"


def _sid(service: str, access: str) -> str:
    # Sids are alphanumeric: "elasticbeanstalk" -> "Elasticbeanstalk", "read" -> "Read".
    return "".join(ch for ch in service.title() if ch.isalnum()) + access.title()


def statements(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    """The policy's statements (see the module doc for the grouping)."""
    grants = list(grants)
    # An action that is also a read somewhere is listed once, under the strongest use: write.
    access_of: dict[tuple[str, str], str] = {}
    for g in grants:
        key = (g.action, g.condition)
        access_of[key] = "write" if "write" in (g.access, access_of.get(key)) else "read"
    resources: dict[tuple[str, str], set[str]] = {}
    for g in grants:
        resources.setdefault((g.action, g.condition), set()).add(g.resource)
    groups: dict[tuple[str, str, str, tuple[str, ...]], list[str]] = {}
    for (action, condition), found in resources.items():
        narrowed = ("*",) if "*" in found else tuple(sorted(found))
        service = action.split(":", 1)[0]
        groups.setdefault((service, access_of[(action, condition)], condition, narrowed), []).append(action)
    out: list[dict[str, Any]] = []
    used: dict[str, int] = {}
    for service, access, condition, narrowed in sorted(groups):
        sid = _sid(service, access)
        used[sid] = used.get(sid, 0) + 1
        statement: dict[str, Any] = {
            "Sid": sid if used[sid] == 1 else f"{sid}{used[sid]}",
            "Effect": "Allow",
            "Action": sorted(groups[(service, access, condition, narrowed)]),
            "Resource": narrowed[0] if len(narrowed) == 1 else list(narrowed),
        }
        if condition:
            statement["Condition"] = json.loads(condition)
        out.append(statement)
    return out


def document(grants: Iterable[Grant]) -> dict[str, Any]:
    """The policy document (empty `Statement` when nothing is granted)."""
    return {"Version": VERSION, "Statement": statements(grants)}


def actions(policy: dict[str, Any]) -> set[str]:
    """Every action a document allows (what a reviewer, or a test, compares)."""
    return {a for s in policy["Statement"] for a in s["Action"]}
