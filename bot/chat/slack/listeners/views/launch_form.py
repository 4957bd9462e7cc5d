"""The launcher form's submission: invalid values are refused inline (the ack is the answer);
valid ones swap the modal for a "planning" screen and plan every step on the work pool."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def launch_form_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any, context: Any) -> None:
    flow = LaunchFlow(context["service"], client)
    user = body["user"]["id"]
    answer, meta = flow.submitted(view, user=user)
    ack(**answer)
    if meta is not None:
        context["work"].submit(flow.preview, view["id"], user=user, meta=meta)
