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

    def __str__(self) -> str:
        return self.value


RESOLVE_PATTERN = re.compile(r"^step_resolve_(verify|retry|skip|rollback)$")
RESOLVE_CHOICES = ("verify", "retry", "skip", "rollback")


class View(str, Enum):
    CONFIRM = "approval_confirm"  # the modal where an approver types the confirm text

    def __str__(self) -> str:
        return self.value


class Block(str, Enum):
    CONFIRM_INPUT = "confirm_input"
    CONFIRM_ACTION = "confirm_value"
    APPROVAL_ACTIONS = "approval_actions"

    def __str__(self) -> str:
        return self.value


COMMAND = "/runbook"
