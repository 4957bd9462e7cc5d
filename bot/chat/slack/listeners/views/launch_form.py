"""The launcher form's submission: invalid values are refused inline (the ack is the answer);
valid ones (by the form's rules and then the engine's, via a dry run that is started here) swap the
modal for a "planning" screen; the plans replace it when the dry run ends."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def launch_form_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any, context: Any) -> None:
    flow = LaunchFlow(context["service"], client)
    user = body["user"]["id"]
    answer, job = flow.submitted(view, user=user)
    ack(**answer)
    if job is not None:
        context["work"].submit(flow.show_plans_later, view["id"], job)
