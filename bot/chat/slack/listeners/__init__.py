"""Every Slack listener, registered from this one place (one callback per file).

Each callback acks first, then hands the work to the work pool (`context["work"]`) so the HTTP
answer, or the Socket Mode envelope ack, goes back at once whatever the work costs. The only thing
done before returning is what Slack requires on the spot: `views_open` with a click's trigger id
(valid for 3 s) and a modal's inline validation (the answer to a view submission is the ack).
"""

from __future__ import annotations

from slack_bolt import App

from bot.chat.slack.ids import RESOLVE_PATTERN, Action, View
from bot.chat.slack.listeners.actions import approve, reject, resolve, rollback
from bot.chat.slack.listeners.commands import runbook
from bot.chat.slack.listeners.views import confirm


def register(app: App, command: str = "/runbook") -> None:
    app.command(command)(runbook.runbook_command)
    app.action(Action.APPROVE.value)(approve.approve_clicked)
    app.action(Action.REJECT.value)(reject.reject_clicked)
    app.action(RESOLVE_PATTERN)(resolve.resolve_clicked)
    app.action(Action.ROLLBACK.value)(rollback.rollback_clicked)
    app.view(View.CONFIRM.value)(confirm.confirm_submitted)
