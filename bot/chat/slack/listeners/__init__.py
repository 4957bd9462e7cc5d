"""Every Slack listener, registered from this one place (one callback per file).

Each callback acks first, then hands the work to the work pool (`context["work"]`) so the HTTP
answer, or the Socket Mode envelope ack, goes back at once whatever the work costs. The only thing
done before returning is what Slack requires on the spot: `views_open` with a click's trigger id
(valid for 3 s) and a modal's inline validation (the answer to a view submission is the ack).
"""

from __future__ import annotations

from slack_bolt import App

from bot.chat.slack.ids import RESOLVE_PATTERN, Action, Shortcut, View
from bot.chat.slack.listeners.actions import alert_ack, approve, launch_pick, reject, rerequest, resolve, rollback
from bot.chat.slack.listeners.commands import runbook
from bot.chat.slack.listeners.events import app_home
from bot.chat.slack.listeners.shortcuts import launch
from bot.chat.slack.listeners.views import confirm, launch_form, launch_plan, reject_reason


def register(app: App, command: str = "/runbook") -> None:
    app.command(command)(runbook.runbook_command)
    app.shortcut(Shortcut.LAUNCH.value)(launch.launch_shortcut)
    app.action(Action.APPROVE.value)(approve.approve_clicked)
    app.action(Action.REJECT.value)(reject.reject_clicked)
    app.action(RESOLVE_PATTERN)(resolve.resolve_clicked)
    app.action(Action.ROLLBACK.value)(rollback.rollback_clicked)
    app.action(Action.LAUNCH_PICK.value)(launch_pick.runbook_picked)
    app.action(Action.REREQUEST.value)(rerequest.rerequest_clicked)
    app.action(Action.ALERT_ACK.value)(alert_ack.alert_ack_clicked)
    app.view(View.CONFIRM.value)(confirm.confirm_submitted)
    app.view(View.LAUNCH_FORM.value)(launch_form.launch_form_submitted)
    app.view(View.LAUNCH_PLAN.value)(launch_plan.launch_plan_submitted)
    app.view(View.REJECT_REASON.value)(reject_reason.reject_reason_submitted)
    app.event("app_home_opened")(app_home.home_opened)
