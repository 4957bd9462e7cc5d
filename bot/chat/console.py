"""The console front end: walk a run in a terminal, for local use and rehearsal.

    runbook-bot run runbooks/demo.yaml -p env=staging --as alice
    runbook-bot run aws-ecs-to-do-app -p env=production --dry-run

`ConsoleChannel` implements the engine's `Channel` with rich (plans as panels, matrices as tables,
a progress bar for long steps); `ConsoleSession` asks the approvals at a prompt and hands the
answers to the same `Runner.approve` that Slack's buttons call, so a rehearsal exercises the very
checks (approvers, self-approval, typed confirmation, expiry) production will.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.prompt import Prompt
from rich.table import Table

from bot import secrets
from bot.engine.channel import Progress as StepProgress
from bot.engine.channel import RunView, StepView, progress_line
from bot.engine.states import EXIT_FAILED, EXIT_OK, EXIT_USAGE, EXIT_WAITING, RUN_EXIT, RUN_FINAL  # noqa: F401

PLAIN_EVERY = 10.0  # seconds between plain progress lines when output is not a terminal

STATE_STYLE = {
    "pending": "dim", "planned": "cyan", "awaiting_approval": "yellow", "applying": "blue",
    "verifying": "blue", "succeeded": "green", "failed": "red", "skipped": "dim", "interrupted": "magenta",
    "rolled_back": "yellow", "running": "blue", "aborted": "red", "rolling_back": "yellow",
    "blocked": "magenta", "completed_with_failures": "red", "rollback_incomplete": "bold red",
}
FINAL_RUN = RUN_FINAL


def _styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def _esc(text: Any) -> str:
    """Escape rich markup in text that came from outside (runbooks, APIs), and mask secrets."""
    from rich.markup import escape

    return escape(secrets.redact(str(text)))


def render_table(rows: list[list[str]], *, title: str | None = None, limit: int | None = None) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    header, body = rows[0], rows[1:]
    for name in header:
        table.add_column(_esc(name))
    shown = body if limit is None else body[:limit]
    for row in shown:
        table.add_row(*[_esc(c) for c in row])
    if limit is not None and len(body) > limit:
        table.caption = f"{len(body) - limit} more rows not shown"
    return table


class ConsoleChannel:
    """Prints what the engine says; progress bars for long steps."""

    def __init__(self, console: Console | None = None, *, verbose: bool = True) -> None:
        self.console = console or Console()
        self.verbose = verbose
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._last_states: dict[str, str] = {}
        self._plain: dict[str, tuple[str | None, float, Any]] = {}  # step -> (phase, last line at, last progress)

    # -- Channel ------------------------------------------------------------------------------

    def run_updated(self, run: RunView) -> None:
        for step in run.steps:
            previous = self._last_states.get(f"{run.id}/{step.key}")
            if previous != step.state and step.state in ("applying", "verifying"):
                self.console.print(f"  {_esc(step.key)}: {_styled(step.state)}")
            self._last_states[f"{run.id}/{step.key}"] = step.state

    def post_plan(self, run: RunView, step: StepView) -> None:
        plan = step.plan or {}
        lines = [f"[bold]{_esc(plan.get('summary', ''))}[/]"]
        for change in plan.get("changes", []):
            arrow = ""
            if change.get("before") is not None or change.get("after") is not None:
                arrow = f": {_esc(change.get('before'))} → {_esc(change.get('after'))}"
            lines.append(f"  • {_esc(change['action'])} {_esc(change['resource'])}{arrow}"
                         + (f" ({_esc(change['detail'])})" if change.get("detail") else ""))
        for warning in plan.get("warnings", []):
            lines.append(f"  [yellow]⚠ {_esc(warning)}[/]")
        for reason in plan.get("blocking", []):
            lines.append(f"  [red]✖ {_esc(reason)}[/]")
        title = f"{_esc(step.key)} · {_esc(step.kind)} · plan"
        self.console.print(Panel("\n".join(lines), title=title, title_align="left", expand=False))
        if plan.get("table"):
            self.console.print(render_table(plan["table"], limit=None if self.verbose else 40))

    def request_approval(self, run: RunView, step: StepView) -> None:
        policy = step.approval_policy or {}
        who = ", ".join(policy.get("approvers", [])) or "anyone"
        need = policy.get("min", 1)
        self.console.print(f"  [yellow]approval needed[/] for {_esc(step.key)}: {need} of {_esc(who)}"
                           + ("" if policy.get("allow_self") else " (not the person who started the run)"))

    def approval_recorded(self, run: RunView, step: StepView, decision: dict[str, Any]) -> None:
        verb = "approved" if decision.get("decision") == "approve" else "rejected"
        self.console.print(f"  {_esc(step.key)} {verb} by {_esc(decision.get('user'))}")

    def report_progress(self, run: RunView, step: StepView, progress: StepProgress) -> None:
        if not self.console.is_terminal:
            # A CI log or a pipe: no bar (rich draws none there); a plain line when the phase changes and
            # every PLAIN_EVERY seconds, so a long step is never silent in a log.
            key = f"{run.id}/{step.key}"
            last_phase, last_at, last = self._plain.get(key, (None, 0.0, None))
            now = time.monotonic()
            if last is not None and progress.phase != last_phase and progress.phases:
                ended = progress.phases[-1]  # the phase that just ended, with its measured length
                rate = f", {last.rate:.1f} {last.unit}/s" if last.rate else ""
                self.console.print(f"  {_esc(step.key)}: {_esc(ended['name'])} done in {ended['seconds']:g} s"
                                   f"{rate}", soft_wrap=True)
            if progress.phase != last_phase or now - last_at >= PLAIN_EVERY:
                self.console.print(f"  {_esc(step.key)}: {_esc(progress_line(progress))}", soft_wrap=True)
                last_at = now
            self._plain[key] = (progress.phase, last_at, progress)
            return
        if self._progress is None:
            self._progress = Progress(TextColumn("  {task.description}"), BarColumn(),
                                      TextColumn("{task.completed:.0f}/{task.total:.0f} {task.fields[unit]}"),
                                      TimeRemainingColumn(), console=self.console, transient=True)
            self._progress.start()
        task = self._tasks.get(step.key)
        total = progress.total if progress.total is not None else max(progress.done, 1)
        description = f"{step.key}: {(progress.phase + ' · ') if progress.phase else ''}{progress.message}"[:70]
        if task is None:
            self._tasks[step.key] = self._progress.add_task(_esc(description), total=total, completed=progress.done,
                                                            unit=progress.unit)
        else:
            self._progress.update(task, total=total, completed=progress.done, description=_esc(description))

    def step_finished(self, run: RunView, step: StepView) -> None:
        self._stop_progress(step.key)
        result = step.result or {}
        verification = step.verification or {}
        if step.state == "succeeded":
            text = result.get("summary", "done")
            if verification.get("summary"):
                text += f" · verified: {verification['summary']}"
            self.console.print(f"  [green]✔[/] {_esc(step.key)}: {_esc(text)}")
        elif step.state == "failed":
            self.console.print(f"  [red]✖[/] {_esc(step.key)}: {_esc(step.error)}")
        else:
            self.console.print(f"  {_esc(step.key)}: {_styled(step.state)}")
        table = result.get("table") or verification.get("table")
        if table and step.state == "failed":
            self.console.print(render_table(table, limit=40))

    def run_finished(self, run: RunView) -> None:
        self._stop_progress(None)
        line = f"run {run.id} ({_esc(run.runbook)}): {_styled(run.state)}"
        if run.error:
            line += f" · {_esc(run.error)}"
        self.console.print(line)
        if any(s.kind == "watch.start" and s.state == "succeeded" for s in run.steps):
            # The console runs no watch scheduler of its own: say how the promised ticks happen.
            self.console.print(f"  the watch ticks while `runbook-bot serve` runs, or here with "
                               f"`runbook-bot watch {run.id} follow` (one tick now: `watch {run.id} now`)")

    def notify(self, run: RunView, text: str, level: str = "info") -> None:
        style = {"error": "red", "warning": "yellow"}.get(level, "white")
        self.console.print(f"  [{style}]{_esc(text)}[/]")

    def post_summary(self, run: RunView, summary: dict[str, Any]) -> None:
        for line in _watch_lines(summary):
            self.console.print(_esc(line))

    def post_alert(self, run: RunView, alert: dict[str, Any]) -> None:
        # The alert's lines already name the on-call, where to look and how to roll back.
        for i, line in enumerate(_watch_lines(alert)):
            self.console.print(f"[bold red]{_esc(line)}[/]" if i == 0 else _esc(line))

    # -- helpers -------------------------------------------------------------------------------

    def _stop_progress(self, key: str | None) -> None:
        if self._progress is None:
            return
        if key is not None and key in self._tasks:
            self._progress.remove_task(self._tasks.pop(key))
        if key is None or not self._tasks:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()


def _watch_lines(summary: dict[str, Any]) -> list[str]:
    from bot.watch.render import console_lines

    return console_lines(summary)


def print_status(console: Console, runs: list[RunView]) -> None:
    table = Table(header_style="bold")
    for column in ("run", "runbook", "state", "started by", "started", "steps"):
        table.add_column(column)
    for run in runs:
        done = sum(1 for s in run.steps if s.state in ("succeeded", "skipped", "rolled_back"))
        started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(run.created_at))
        table.add_row(run.id, _esc(run.runbook), _styled(run.state) + (" (dry run)" if run.dry_run else ""),
                      _esc(run.started_by), started, f"{done}/{len(run.steps)}")
    console.print(table)


def print_run(console: Console, run: RunView) -> None:
    params = " ".join(f"{k}={v}" for k, v in run.params.items())
    console.print(f"[bold]run {run.id}[/] · {_esc(run.runbook)} {_esc(params)} · {_styled(run.state)}"
                  f" · started by {_esc(run.started_by)} ({run.front_end})")
    if run.error:
        console.print(f"  {_esc(run.error)}")
    table = Table(header_style="bold")
    for column in ("step", "kind", "state", "detail"):
        table.add_column(column)
    for step in run.steps:
        detail = step.error or (step.result or {}).get("summary") or (step.plan or {}).get("summary") or ""
        if step.state == "awaiting_approval" and step.approval_policy:
            got = sum(1 for a in step.approvals if a["decision"] == "approve")
            detail = f"{got}/{step.approval_policy.get('min', 1)} approvals · " + detail
        if step.state in ("applying", "verifying", "rolling_back") and step.progress:
            detail = progress_line(step.progress)  # the record the store keeps, from whichever process runs it
        table.add_row(_esc(step.key), _esc(step.kind), _styled(step.state), _esc(detail)[:100])
    console.print(table)


class ConsoleSession:
    """Drive one run interactively: prompt for approvals and for decisions on interrupted steps."""

    def __init__(self, runner: Any, console: Console, *, user: str, auto_approve: bool = False,
                 interactive: bool | None = None) -> None:
        self.runner = runner
        self.console = console
        self.user = user
        self.auto_approve = auto_approve
        self.interactive = sys.stdin.isatty() if interactive is None else interactive

    def follow(self, run_id: str) -> int:
        """Answer prompts until the run ends or waits on someone else; returns the exit code."""
        while True:
            self.runner.wait_idle()
            run = self.runner.view(run_id)
            if run.state in FINAL_RUN:
                return RUN_EXIT.get(run.state, EXIT_FAILED)
            waiting = next((s for s in run.steps if s.state == "awaiting_approval"), None)
            interrupted = next((s for s in run.steps if s.state == "interrupted"), None)
            if interrupted is not None:
                if not self._resolve(run, interrupted):
                    return EXIT_WAITING
                continue
            if waiting is None:
                if any(s.state in ("applying", "verifying") for s in run.steps):
                    time.sleep(0.2)
                    continue
                blocked = next((s for s in run.steps if s.state == "blocked"), None)
                if blocked is not None:
                    self.console.print(f"[magenta]{_esc(blocked.key)} is blocked[/]: {_esc(blocked.error)}\n"
                                       f"once the reason is gone: `runbook-bot replan {run_id}` (nothing was undone)")
                    return EXIT_WAITING
                self.console.print(f"run {run_id} is {run.state} and waits on nothing this console can answer")
                return EXIT_WAITING
            if not self._approve(run, waiting):
                self.console.print(f"run {run_id} waits for approval of {waiting.key}: "
                                   f"`runbook-bot approve {run_id} {waiting.key} --as USER`")
                return EXIT_WAITING

    def _approve(self, run: RunView, step: StepView) -> bool:
        policy = step.approval_policy or {}
        confirm_text = policy.get("confirm_text")
        if self.auto_approve:
            decision = self.runner.approve(run.id, step.key, user=self.user, front_end="console",
                                           confirm=confirm_text)
            self._say(decision)
            return decision.ok
        if not self.interactive:
            return False
        while True:
            answer = Prompt.ask(f"[bold]{step.key}[/]: approve as {self.user}?",
                                choices=["approve", "reject", "as", "abort", "later"], default="approve",
                                console=self.console)
            if answer == "later":
                return False
            if answer == "abort":
                self._say(self.runner.abort(run.id, user=self.user, front_end="console"))
                return True
            if answer == "as":
                self.user = Prompt.ask("approve as which user", console=self.console) or self.user
                continue
            if answer == "reject":
                reason = Prompt.ask("reason", console=self.console, default="")
                self._say(self.runner.reject(run.id, step.key, user=self.user, front_end="console", reason=reason))
                return True
            confirm = None
            if confirm_text:
                confirm = Prompt.ask(f"type [bold]{_esc(confirm_text)}[/] to confirm", console=self.console)
            decision = self.runner.approve(run.id, step.key, user=self.user, front_end="console", confirm=confirm,
                                           plan_digest=step.plan_digest)  # the plan printed above, no other
            self._say(decision)
            if decision.ok:
                return True

    def _resolve(self, run: RunView, step: StepView) -> bool:
        self.console.print(f"[magenta]{step.key} was interrupted[/] while applying (the process stopped). "
                           "Check the platform, then decide.")
        if not self.interactive:
            self.console.print(f"decide with `runbook-bot resolve {run.id} {step.key} verify|retry|skip|rollback`")
            return False
        offers = step.offers or ["verify", "retry", "skip", "rollback"]  # the advised choice first
        action = Prompt.ask("decision", choices=[*offers, "later"], default=offers[0], console=self.console)
        if action == "later":
            return False
        self._say(self.runner.resolve(run.id, step.key, action, user=self.user, front_end="console"))
        return True

    def _say(self, decision: Any) -> None:
        # Successes are already told by the channel as they happen; refusals are only told here.
        if not decision.ok:
            self.console.print(f"  [red]{_esc(decision.message)}[/]")
