"""Start (the plan screen's submit): start the run for real; the modal then says where it lives.

Starting only stores the run and queues its driving (`Runner(background=True)`), so it fits in the
ack; a refusal (the environment is locked by another run) is shown in the same modal."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def launch_plan_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any, context: Any) -> None:
    ack(**LaunchFlow(context["service"], client).start(view, user=body["user"]["id"]))
