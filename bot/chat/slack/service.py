"""What the Slack listeners do once they have acknowledged: commands, approvals, answers.

No bolt here: listeners (`bot.chat.slack.listeners`) ack, parse the payload into plain arguments and
hand them to these methods on the work pool. Answers to one person (usage errors, refusals) are
ephemeral: through the request's `response_url` when there is one (it works in any channel, even
one the bot is not in), else `chat.postEphemeral`.

    service = SlackService(runner=runner, store=store, poster=poster)
    service.command(user="U1", channel="C1", text="run aws-to-do env=staging", response_url=...)
    service.approve(user="U2", channel="C1", run_id="r-1", step_key="switch-dns", confirm="production")
"""

from __future__ import annotations

import difflib
import logging
import re
import shlex
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from bot import config, secrets
from bot.chat.slack import messages
from bot.chat.slack.directory import DirectoryUnavailable
from bot.chat.slack.web import Poster
from bot.engine.runner import StartRefused
from bot.runbook.load import RunbookInvalid, find_runbooks, load_runbook
from bot.watch import service as watch_service

log = logging.getLogger(__name__)

FRONT_END = "slack"
USAGE = {
    "help": "/runbook help",
    "list": "/runbook list",
    "plan": "/runbook plan NAME k=v ...",
    "run": "/runbook run NAME k=v ...",
    "status": "/runbook status [RUN]",
    "abort": "/runbook abort RUN",
    "rollback": "/runbook rollback RUN",
    "replan": "/runbook replan RUN",
    "watch": "/runbook watch RUN start|stop|now|chart",
}
FULL_USAGE = "/runbook help | list | plan NAME k=v ... | run [NAME k=v ...] | status [RUN] | abort RUN | rollback RUN" \
             " | replan RUN | watch RUN start|stop|now|chart"
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
WATCH_ACTIONS = ("start", "stop", "now", "chart")


class UsageError(Exception):
    def __init__(self, problem: str, usage: str, suggestions: list[str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.usage = usage
        self.suggestions = suggestions or []


def parse_params(tokens: list[str], usage: str) -> dict[str, str]:
    """`k=v` tokens into a dict; a token without `=`, an empty or repeated name is a usage error."""
    params: dict[str, str] = {}
    for token in tokens:
        name, sep, value = token.partition("=")
        if not sep:
            raise UsageError(f"{token!r} is not a parameter: write name=value", usage)
        if not PARAM_NAME.match(name):
            raise UsageError(f"{name!r} is not a parameter name (letters, digits, _ . -)", usage)
        if name in params:
            raise UsageError(f"parameter {name!r} is given twice", usage)
        params[name] = value
    return params


class SlackService:
    def __init__(self, *, runner: Any, store: Any, poster: Poster, channel: Any = None,
                 runbooks_dir: Callable[[], Path] = config.runbooks_dir) -> None:
        self.runner = runner
        self.store = store
        self.poster = poster
        self.channel = channel
        self.runbooks_dir = runbooks_dir

    def default_channel(self) -> str | None:
        return getattr(self.channel, "default_channel", None)

    # -- answering one person ---------------------------------------------------------------------

    def ephemeral(self, *, user: str, channel: str | None, response_url: str | None, msg: messages.Message) -> None:
        payload = secrets.redact_obj(msg.payload())
        if response_url:
            webhook = WebhookClient(response_url, retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2),
                                                                  RateLimitErrorRetryHandler(max_retry_count=2)])
            response = webhook.send(response_type="ephemeral", replace_original=False, **payload)
            if response.status_code == 200:
                return
            log.warning("response_url answered %s; falling back to chat.postEphemeral", response.status_code)
        try:
            if channel:
                self.poster.send("chat.postEphemeral", channel=channel, user=user, **payload)
            else:
                # A click on the App Home has no channel and no response_url: answer in the app's DM
                # with the clicker, which only they see, rather than not at all.
                self.poster.send("chat.postMessage", channel=user, **payload)
        except SlackApiError as exc:
            # Private answers are not durable by nature; queueing one for later helps nobody.
            log.warning("could not answer %s privately: %s", user, exc.response.get("error"))

    def _usage(self, exc: UsageError, **where: Any) -> None:
        self.ephemeral(msg=messages.render("usage_error", {"problem": exc.problem, "usage": exc.usage,
                                                           "suggestions": exc.suggestions}), **where)

    def _refusal(self, decision: Any, run_id: str, step_key: str | None, **where: Any) -> None:
        self.ephemeral(msg=messages.render("refusal", {"message": decision.message, "code": decision.code,
                                                       "run_id": run_id, "step_key": step_key}), **where)

    def _say(self, text: str, **where: Any) -> None:
        self.ephemeral(msg=messages.render("say", {"text": text}), **where)

    # -- the slash command ------------------------------------------------------------------------

    def command(self, *, user: str, channel: str, text: str, response_url: str | None = None) -> None:
        where = {"user": user, "channel": channel, "response_url": response_url}
        try:
            self._command(user, channel, text, where)
        except UsageError as exc:
            self._usage(exc, **where)
        except Exception as exc:  # the person must hear that it failed; the traceback goes to the log
            log.error("/runbook %r failed:\n%s", secrets.redact(text), secrets.redact(traceback.format_exc()))
            self._say(f"Something went wrong: {type(exc).__name__}: {secrets.redact(str(exc))}", **where)

    def _command(self, user: str, channel: str, text: str, where: dict[str, Any]) -> None:
        try:
            tokens = shlex.split(text or "")
        except ValueError as exc:
            raise UsageError(f"cannot read the arguments: {exc}", FULL_USAGE) from None
        if not tokens or tokens[0] == "help":
            self.ephemeral(msg=messages.render("help", {}), **where)
            return
        sub, args = tokens[0].lower(), tokens[1:]
        if sub not in USAGE:
            close = difflib.get_close_matches(sub, list(USAGE), n=3)
            raise UsageError(f"unknown command {sub!r}", FULL_USAGE, close)
        usage = USAGE[sub]
        if sub == "list":
            self._list(where)
        elif sub in ("run", "plan"):
            if not args:
                raise UsageError(f"`{sub}` needs a runbook name", usage, sorted(self._runbooks())[:10])
            path = self._runbook_path(args[0], usage)
            params = parse_params(args[1:], usage)
            try:
                run = self.runner.start(str(path), params, started_by=user, front_end=FRONT_END,
                                        chat={"channel": channel, "started_by": user}, dry_run=sub == "plan")
            except StartRefused as exc:
                raise UsageError(f"{args[0]} did not start: {exc}", usage) from None
            self._say(f"{'Planning' if sub == 'plan' else 'Started'} {run.runbook} as run {run.id}: follow it in"
                      " its thread.", **where)
        elif sub == "status":
            if len(args) > 1:
                raise UsageError("`status` takes at most one run id", usage)
            if args:
                runs = [self._view(args[0], usage)]
            else:
                runs = [self.runner.view(r["id"]) for r in self.store.list_runs(states=("running", "rolling_back"))]
            self.ephemeral(msg=messages.render("run_status", {"runs": runs}), **where)
        elif sub in ("abort", "rollback", "replan"):
            if len(args) != 1:
                raise UsageError(f"`{sub}` takes one run id", usage)
            run = self._view(args[0], usage)
            action = {"abort": self.runner.abort, "rollback": self.runner.rollback, "replan": self.runner.replan}[sub]
            decision = action(run.id, user=user, front_end=FRONT_END)
            if decision.ok:
                self._say(decision.message, **where)
            else:
                self._refusal(decision, run.id, None, **where)
        elif sub == "watch":
            self._watch(args, user, usage, where)

    def _runbooks(self) -> dict[str, Path]:
        directory = self.runbooks_dir()
        return find_runbooks(directory) if Path(directory).is_dir() else {}

    def _runbook_path(self, name: str, usage: str) -> Path:
        found = self._runbooks()
        if name in found:
            return found[name]
        close = difflib.get_close_matches(name, list(found), n=3, cutoff=0.5)
        raise UsageError(f"no runbook named {name!r}", usage, close or sorted(found)[:5])

    def _view(self, run_id: str, usage: str) -> Any:
        try:
            return self.runner.view(run_id)
        except KeyError:
            recent = [r["id"] for r in self.store.list_runs(limit=200)]
            close = difflib.get_close_matches(run_id, recent, n=3, cutoff=0.6)
            raise UsageError(f"no run {run_id!r} (an id or a unique prefix of one)", usage, close) from None

    def _list(self, where: dict[str, Any]) -> None:
        items = []
        for name, path in sorted(self._runbooks().items()):
            try:
                model = load_runbook(path).model
            except RunbookInvalid as exc:
                items.append({"name": name, "description": None, "params": [],
                              "error": f"{len(exc.errors)} problem(s): {exc.errors[0]}"})
                continue
            params = [f"{k}" + (f"={p.default}" if p.default is not None else "") for k, p in model.params.items()]
            items.append({"name": name, "description": model.description, "params": params, "error": None})
        self.ephemeral(msg=messages.render("runbook_list", {"runbooks": items, "directory": str(self.runbooks_dir())}),
                       **where)

    def _watch(self, args: list[str], user: str, usage: str, where: dict[str, Any]) -> None:
        if len(args) != 2 or args[1] not in WATCH_ACTIONS:
            raise UsageError("`watch` takes a run id and one of start, stop, now, chart", usage)
        watch = watch_service
        run = self._view(args[0], usage)
        action = args[1]
        try:
            if action == "start":
                spec, targets = self._watch_spec(run.id)
                status = watch.start(self.store, run.id, spec, targets=targets, started_by=user)
                self._say(f"Watching run {run.id} every {int(status['every'])}s until the window ends; the first"
                          " summary is due now, in the run's thread.", **where)
            elif action == "stop":
                stopped = watch.stop(self.store, run.id, by=user)
                self._say(f"Stopped the watch of run {run.id}." if stopped else f"Run {run.id} has no active watch.",
                          **where)
            elif action == "now":
                # the engine's channel: the thread, and also the App Home and the breach pager
                watch.tick_now(self.store, run.id, self.runner.channel, run_view=self.runner.view)
                self._say(f"Posted a watch summary in the thread of run {run.id}.", **where)
            else:
                png = watch.chart_png(self.store, run.id)
                if self.channel is None:
                    raise UsageError("charts need the Slack channel", usage)
                self.channel.attach_file(run, png, filename=f"{run.id}-watch.png", title=f"Watch of run {run.id}")
                self._say(f"Attached the watch chart to the thread of run {run.id}.", **where)
        except watch.WatchError as exc:
            self._say(str(exc), **where)

    def _watch_spec(self, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The run's watch spec (the runbook's `watch:` block, else its `watch.start` step) and targets."""
        from bot.runbook.render import TemplateContext, env_values, render_value
        from bot.runbook.targets import parse_target

        row = self.store.get_run(run_id)
        model = load_runbook(row["runbook_path"]).model
        ctx = TemplateContext(params=row["params"], targets={}, env=env_values(model.env), outputs={})
        raw_targets = {name: render_value(raw, ctx) for name, raw in model.targets.items()}
        targets = {name: parse_target(raw) for name, raw in raw_targets.items()}
        spec = model.watch
        if spec is None:
            step = next((s for s in model.steps if s.kind == "watch.start"), None)
            if step is None:
                raise UsageError(f"runbook {model.name} has no `watch:` section and no watch.start step",
                                 USAGE["watch"])
            ctx = TemplateContext(params=row["params"], targets=raw_targets, env=env_values(model.env), outputs={})
            spec = render_value(step.with_, ctx)
        return spec, targets

    # -- buttons and modals -----------------------------------------------------------------------

    def approve(self, *, user: str, channel: str | None, run_id: str, step_key: str, confirm: str | None = None,
                response_url: str | None = None, plan_digest: str | None = None) -> Any:
        return self._decide(self.runner.approve, user=user, channel=channel, run_id=run_id, step_key=step_key,
                            response_url=response_url, confirm=confirm, plan_digest=plan_digest)

    def may_open_confirm(self, *, user: str, channel: str | None, run_id: str, step_key: str,
                         response_url: str | None = None, plan_digest: str | None = None) -> bool:
        """Before a confirm modal opens: may this user approve at all? If not, they are told privately."""
        decision = self._decide(self.runner.may_approve, user=user, channel=channel, run_id=run_id,
                                step_key=step_key, response_url=response_url, plan_digest=plan_digest)
        return bool(decision is not None and decision.ok)

    def reject(self, *, user: str, channel: str | None, run_id: str, step_key: str, reason: str = "",
               response_url: str | None = None) -> Any:
        """`reason`: what the reject modal asked for; recorded with the decision and shown in the thread."""
        return self._decide(self.runner.reject, user=user, channel=channel, run_id=run_id, step_key=step_key,
                            response_url=response_url, reason=reason or "rejected in Slack (no reason given)")

    def resolve(self, *, user: str, channel: str | None, run_id: str, step_key: str, action: str,
                response_url: str | None = None) -> Any:
        return self._decide(lambda run, key, **kw: self.runner.resolve(run, key, action, **kw), user=user,
                            channel=channel, run_id=run_id, step_key=step_key, response_url=response_url)

    def rollback(self, *, user: str, channel: str | None, run_id: str, response_url: str | None = None) -> Any:
        where = {"user": user, "channel": channel, "response_url": response_url}
        decision = self.runner.rollback(run_id, user=user, front_end=FRONT_END)
        if decision.ok:
            self._say(decision.message, **where)
        else:
            self._refusal(decision, run_id, None, **where)
        return decision

    def _decide(self, action: Callable[..., Any], *, user: str, channel: str | None, run_id: str, step_key: str,
                response_url: str | None, **kwargs: Any) -> Any:
        where = {"user": user, "channel": channel, "response_url": response_url}
        if not isinstance(run_id, str) or not isinstance(step_key, str) or not run_id:
            log.warning("a click or form named no run (%r, %r); nothing decided", run_id, step_key)
            self._say("That button or form names no run (the message may be damaged); nothing was recorded.",
                      **where)
            return None
        try:
            decision = action(run_id, step_key, user=user, front_end=FRONT_END, **kwargs)
        except DirectoryUnavailable as exc:
            self.store.add_event(run_id, "approval.refused", actor=user, front_end=FRONT_END, step_key=step_key,
                                 detail={"code": "directory_unavailable", "message": str(exc)})
            self._say(f"Could not check the approvers right now ({exc}). Nothing was recorded; try again.",
                      **where)
            return None
        except Exception as exc:  # the clicker must hear that it failed; the traceback goes to the log
            log.error("deciding %s of %s failed:\n%s", step_key, run_id, secrets.redact(traceback.format_exc()))
            self._say(f"Something went wrong: {type(exc).__name__}: {secrets.redact(str(exc))}", **where)
            return None
        if not decision.ok:
            # The engine has written the audit event; the clicker learns why, privately.
            self._refusal(decision, run_id, step_key, **where)
        return decision

    def rerequest(self, *, user: str, channel: str | None, run_id: str, step_key: str,
                  response_url: str | None = None) -> Any:
        """An expired approval's Re-request: the step's approvers or the run's starter plan it afresh
        (`Runner.replan`: waiting steps go back to pending, old approvals never count again)."""
        where = {"user": user, "channel": channel, "response_url": response_url}
        readable = isinstance(run_id, str) and isinstance(step_key, str)
        run, step, _ = self.confirm_text(run_id, step_key) if readable else (None, None, None)
        allowed = self.may_decide(run, step, user)
        if step is None or step.state != "awaiting_approval" or not allowed:
            code = "not_allowed" if step is not None and step.state == "awaiting_approval" else "not_awaiting"
            message = (f"{user} may not re-request {step_key}: only its approvers or the person who started the run"
                       if code == "not_allowed" else f"{step_key} is not waiting for approval any more")
            if run is not None:
                self.record_refusal(user=user, run_id=run.id, step_key=step_key, code=code, message=message)
            self._say(message if run is not None else f"There is no run {str(run_id)[:40]}; nothing was recorded.",
                      **where)
            return None
        decision = self.runner.replan(run.id, user=user, front_end=FRONT_END)
        if decision.ok:
            self._say(f"Re-requested: {step_key} is planned afresh and asks its approvers again.", **where)
        else:
            self._refusal(decision, run.id, step_key, **where)
        return decision

    def may_decide(self, run: Any, step: Any, user: str) -> bool:
        """May `user` reject or re-request this step: its approvers, or the person who started the run
        (the engine's rule for reject; checked here too so nobody types a reason only to be refused)."""
        if run is None or step is None:
            return False
        policy = step.approval_policy or {}
        if user == run.started_by:
            return True
        try:
            return any(self.runner.directory.matches(user, a) for a in policy.get("approvers") or [])
        except DirectoryUnavailable:
            return True  # cannot tell now: let the engine decide when the reason is submitted

    def acknowledge_alert(self, *, user: str, channel: str | None, run_id: str, tick_no: Any,
                          response_url: str | None = None) -> None:
        where = {"user": user, "channel": channel, "response_url": response_url}
        reminders = getattr(self, "reminders", None)
        if reminders is None or tick_no is None or not isinstance(run_id, str):
            self._say("This alert cannot be acknowledged here.", **where)
            return
        try:
            tick = int(tick_no)
        except (TypeError, ValueError):
            self._say("This alert button is damaged; nothing was recorded.", **where)
            return
        earlier = reminders.acknowledge(run_id, tick, user=user)
        if earlier is None:
            self.channel.notify(self.runner.view(run_id), f"{user} acknowledged the watch breach (tick {tick_no});"
                                " on-call is no longer paged for it.", "info")
            self._say("Acknowledged: on-call is no longer paged for this breach.", **where)
        else:
            self._say(f"Already acknowledged by {earlier}.", **where)

    def confirm_text(self, run_id: str, step_key: str) -> tuple[Any, Any, str | None]:
        """The run, the step and the text its approver must type (None: no confirmation needed)."""
        try:
            run = self.runner.view(run_id)
        except KeyError:  # a modal or button for a run this store does not have: the engine will say so
            return None, None, None
        step = next((s for s in run.steps if s.key == step_key), None)
        policy = (step.approval_policy or {}) if step else {}
        return run, step, policy.get("confirm_text")

    def record_refusal(self, *, user: str, run_id: str, step_key: str, code: str, message: str) -> None:
        """An attempt the engine never saw (a modal refused on Slack's side) still gets an audit event."""
        self.store.add_event(run_id, "approval.refused", actor=user, front_end=FRONT_END, step_key=step_key,
                             detail={"code": code, "message": message})
