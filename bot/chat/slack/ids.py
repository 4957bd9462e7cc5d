"""Action, view and block ids: one place, so templates, listeners and tests agree.

Ids are stable names; the run and step a control refers to travel in the button `value` (a small
JSON object, see `bot.chat.slack.messages.button_value`), never in the id, so bolt can route on an
exact id and a message may hold the same control for several steps.
"""

from __future__ import annotations

import re
from enum import Enum


class Action(str, Enum):
    APPROVE = "step_approve"
    REJECT = "step_reject"
    RESOLVE = "step_resolve"  # suffixed with the choice: step_resolve_verify, ..._retry, ...
    ROLLBACK = "run_rollback"  # the watch alert's Rollback button
    LAUNCH_PICK = "launch_pick_runbook"  # the launcher's runbook select (re-renders the form)
    REREQUEST = "step_rerequest"  # an expired approval: plan the step afresh and ask again
    ALERT_ACK = "alert_ack"  # a watch breach: stop paging on-call

    def __str__(self) -> str:
        return self.value


RESOLVE_PATTERN = re.compile(r"^step_resolve_(verify|retry|skip|rollback)$")
RESOLVE_CHOICES = ("verify", "retry", "skip", "rollback")


class View(str, Enum):
    CONFIRM = "approval_confirm"  # the modal where an approver types the confirm text
    LAUNCH_FORM = "launch_form"  # the launcher: a runbook and its params
    LAUNCH_PLAN = "launch_plan"  # the launcher: every step's plan, submit = Start
    REJECT_REASON = "reject_reason"  # the modal asking why a step is rejected

    def __str__(self) -> str:
        return self.value


class Block(str, Enum):
    CONFIRM_INPUT = "confirm_input"
    CONFIRM_ACTION = "confirm_value"
    APPROVAL_ACTIONS = "approval_actions"
    LAUNCH_RUNBOOK = "launch_runbook"
    LAUNCH_CHANNEL = "launch_channel"
    REJECT_INPUT = "reject_reason"
    REJECT_ACTION = "reason"
    PARAM_PREFIX = "param:"  # + the param name; the element's action_id is PARAM_ACTION
    PARAM_ACTION = "value"

    def __str__(self) -> str:
        return self.value


class Shortcut(str, Enum):
    LAUNCH = "runbook_launch"  # the global shortcut that opens the launcher (slack-manifest.yaml)

    def __str__(self) -> str:
        return self.value


COMMAND = "/runbook"
