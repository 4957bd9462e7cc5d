"""The engine's `Channel`, in Slack: one thread per run.

    channel = SlackChannel(poster, default_channel="C0123")
    runner = Runner(store, channel, directory=SlackDirectory(client), background=True)

A run's thread starts with a header message (runbook, params, who started it, the live step list)
that is edited in place (`chat.update`) as the run moves. Each step gets one reply in the thread,
edited as it goes: its plan, then its approval buttons, then who decided and when, then progress
and its result. The run's end, notices and watch summaries are further replies; a watch alert is
also broadcast to the channel.

Calls from the engine never wait on Slack, nor on rendering: each hands the view (a snapshot the
engine builds per call) to the run's sender lane (`bot.chat.slack.lanes`): a run's posts keep their
order, while one run waiting out a rate limit holds up no other run. A lane renders a message
when its turn comes and, when Slack is slow or rate-limits us, sends only the newest version of
each message. Posts that fail after retries go to
the outbox (see `bot.chat.slack.web`). Progress edits are throttled to one a second per step.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from bot.chat.slack import messages
from bot.chat.slack.lanes import Lanes
from bot.chat.slack.web import Poster

log = logging.getLogger(__name__)

HEADER = "header"


def step_ref(key: str) -> str:
    return f"step:{key}"


class SlackChannel:
    def __init__(self, poster: Poster, *, default_channel: str | None = None, directory: Any = None,
                 clock: Callable[[], float] = time.monotonic, progress_interval: float = 1.0,
                 gate: Any = None) -> None:
        self.poster = poster
        self.gate = gate  # an AckGate: posts give way to acks in flight (bounded), like the work pool
        self.directory = directory  # resolves on-call specs into mentions that notify
        self.default_channel = default_channel
        self.clock = clock
        self.progress_interval = progress_interval
        self._lanes = Lanes()  # one ordered lane per run: a run's 429 back-off holds up no other run
        self._lock = threading.Lock()
        self._latest: OrderedDict[tuple[str, str], tuple[str, str | None, Callable[[], messages.Message]]] = \
            OrderedDict()
        self._last_progress: dict[tuple[str, str], float] = {}
        self._uploaded: dict[tuple[str, str], str] = {}
        self._versions: dict[tuple[str, str], float] = {}  # message -> `updated_at` of the newest view queued
        self._runs: dict[str, Any] = {}          # the newest view of each run, for its header
        self._delays: dict[str, float] = {}      # run id -> seconds its messages waited for Slack
        if poster.on_recovered is None:
            poster.on_recovered = self._recovered

    # -- the Channel protocol ---------------------------------------------------------------------

    def run_updated(self, run: Any) -> None:
        self._runs[run.id] = run
        delay = self._delays.get(run.id)
        self._message(run, HEADER, lambda: messages.render("run_header", {"run": run, "slack_delay": delay}),
                      thread=None)

    def _recovered(self, run_id: str, seconds: float) -> None:
        """Slack answers again after holding this run's messages: say so in the header, once."""
        if seconds < 5 or run_id not in self._runs:
            return
        self._delays[run_id] = max(seconds, self._delays.get(run_id, 0.0))
        self.run_updated(self._runs[run_id])

    def post_plan(self, run: Any, step: Any) -> None:
        self._step(run, step)

    def request_approval(self, run: Any, step: Any) -> None:
        self._step(run, step)
        channel = self.channel_for(run)
        if channel is not None:
            # Resolving group mentions may call Slack; do it on the sender thread, not the engine's.
            self._lanes.submit(run.id, self._ask_approvers, run, step, channel)

    def _ask_approvers(self, run: Any, step: Any, channel: str) -> None:
        policy = step.approval_policy or {}
        try:
            mentions = self.mentions([a for a in policy.get("approvers") or [] if a != "*"])
            msg = messages.render("approval_request", {"run": run, "step": step, "mentions": mentions})
            self.poster.post(run.id, f"ask:{step.key}:{step.requested_at}", channel=channel, thread=HEADER,
                             **msg.payload())
        except Exception:  # the sender thread must survive any one message; the failure is logged loudly
            log.exception("asking the approvers of %s in run %s failed", step.key, run.id)

    def approval_recorded(self, run: Any, step: Any, decision: dict[str, Any]) -> None:
        self._step(run, step)

    def report_progress(self, run: Any, step: Any, progress: Any) -> None:
        key = (run.id, step.key)
        now = self.clock()
        with self._lock:
            last = self._last_progress.get(key)
            if last is not None and now - last < self.progress_interval:
                return  # at most one edit a second per step; the final state comes with step_finished
            self._last_progress[key] = now
        self._step(run, step, progress=progress)

    def step_finished(self, run: Any, step: Any) -> None:
        with self._lock:
            self._last_progress.pop((run.id, step.key), None)
        self._step(run, step)

    def run_finished(self, run: Any) -> None:
        self.run_updated(run)
        self._message(run, "finished", lambda: messages.render("run_finished", {"run": run}), thread=HEADER)

    def notify(self, run: Any, text: str, level: str = "info") -> None:
        self._message(run, f"notify:{uuid.uuid4().hex[:8]}",
                      lambda: messages.render("notify", {"run": run, "text": text, "level": level}), thread=HEADER)

    def post_summary(self, run: Any, summary: dict[str, Any]) -> None:
        name = f"watch:{summary.get('tick_no')}"
        self._message(run, name, lambda: messages.render("watch_summary", {"summary": summary}), thread=HEADER,
                      chart=summary.get("chart_png"))

    def post_alert(self, run: Any, alert: dict[str, Any]) -> None:
        name = f"alert:{alert.get('tick_no')}"
        self._message(run, name, lambda: messages.render(
            "watch_alert", {"alert": alert, "mentions": self.mentions(alert.get("on_call") or [])}),
            thread=HEADER, broadcast=True, chart=alert.get("chart_png"))

    def mentions(self, specs: list[str]) -> list[str]:
        """Specs as Slack mentions that notify: `<@U1>`, `<!subteam^S1|@oncall>` (a group handle alone
        pings nobody). A spec that cannot be resolved is shown as written."""
        from bot.chat.slack.directory import DirectoryUnavailable

        out = []
        for spec in specs:
            spec = str(spec)
            try:
                if spec.startswith("@") and self.directory is not None:
                    group = self.directory.group_id(spec[1:])
                    out.append(f"<!subteam^{group}|{messages.esc(spec)}>" if group else f"`{messages.esc(spec)}`")
                    continue
                if "@" in spec and self.directory is not None:
                    user = self.directory.user_for_email(spec)
                    out.append(f"<@{user}>" if user else messages.esc(spec))
                    continue
            except DirectoryUnavailable as exc:
                log.warning("could not resolve on-call %s for a mention: %s", spec, exc)
                out.append(f"`{messages.esc(spec)}`")
                continue
            out.append(messages.approver(spec))
        return out

    # -- plumbing ---------------------------------------------------------------------------------

    def channel_for(self, run: Any) -> str | None:
        chat = getattr(run, "chat", None) or {}
        if chat.get("quiet"):
            return None  # the launcher's dry run: its plans are shown in the modal, not in a thread
        return chat.get("channel") or self.default_channel

    def _step(self, run: Any, step: Any, progress: Any = None) -> None:
        def msg() -> messages.Message:
            return messages.render("step", {"run": run, "step": step, "progress": progress})

        if self.poster.ref(run.id, HEADER) is None and not self._queued(run.id, HEADER):
            self.run_updated(run)  # a step reply needs its thread's parent first
        self._message(run, step_ref(step.key), msg, thread=HEADER)

    def _queued(self, run_id: str, name: str) -> bool:
        with self._lock:
            return (run_id, name) in self._latest

    def _message(self, run: Any, name: str, msg: Callable[[], messages.Message], *, thread: str | None,
                 broadcast: bool = False, chart: bytes | None = None) -> None:
        """Queue message `name` of the run; `msg` renders it, on the sender thread, only if it is still
        the newest version when its turn comes (a burst of progress renders once)."""
        channel = self.channel_for(run)
        if channel is None:
            if (getattr(run, "chat", None) or {}).get("quiet"):
                return
            log.warning("run %s has no Slack channel (started outside Slack, SLACK_CHANNEL unset);"
                        " not posting %s", run.id, name)
            return
        key = (run.id, name)
        version = getattr(run, "updated_at", None)
        with self._lock:
            # Views are built by the engine's threads; one built before a later transition can arrive
            # after it (a slow telling racing a resume). Never let an older view overwrite a newer one.
            newest = self._versions.get(key)
            if version is not None and newest is not None and version < newest:
                return
            if version is not None:
                self._versions[key] = version
            scheduled = key in self._latest
            self._latest[key] = (channel, thread, msg)
        if not scheduled:
            self._lanes.submit(run.id, self._send, key, broadcast, chart)
        elif chart is not None:
            self._lanes.submit(run.id, self._upload_chart, run.id, name, channel, chart)

    def _send(self, key: tuple[str, str], broadcast: bool, chart: bytes | None) -> None:
        if self.gate is not None:
            self.gate.wait_quiet()  # the newest content is picked up below, so waiting loses nothing
        with self._lock:
            channel, thread, render = self._latest.pop(key)
        run_id, name = key
        extra: dict[str, Any] = {"reply_broadcast": True} if broadcast else {}
        try:
            msg = render()
            self.poster.post(run_id, name, channel=channel, thread=thread, unfurl_links=False, **msg.payload(), **extra)
            if msg.overflow:
                self._attach(run_id, name, channel, msg.overflow)
            if chart is not None:
                self._upload_chart(run_id, name, channel, chart)
        except Exception:  # the sender thread must survive any one message; the failure is logged loudly
            log.exception("posting %s of run %s to Slack failed", name, run_id)

    def _thread_ts(self, run_id: str) -> str | None:
        ref = self.poster.ref(run_id, HEADER)
        return ref[1] if ref else None

    def _attach(self, run_id: str, name: str, channel: str, text: str) -> None:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        if self._uploaded.get((run_id, name)) == digest:
            return  # this exact output is attached already
        self._uploaded[(run_id, name)] = digest
        safe = name.replace(":", "-").replace("/", "-")
        self.poster.send("files.upload_v2", run_id=run_id, name=f"file:{name}:{digest}", channel=channel,
                         thread_ts=self._thread_ts(run_id), content=text, filename=f"{run_id}-{safe}.txt",
                         title=f"Full output: {name}", initial_comment="Full output (the message was truncated)")

    def _upload_chart(self, run_id: str, name: str, channel: str, chart: bytes) -> None:
        self.poster.send("files.upload_v2", run_id=run_id, name="", channel=channel,
                         thread_ts=self._thread_ts(run_id), content=chart,
                         filename=f"{run_id}-{name.replace(':', '-')}.png", title=f"Watch chart ({name})")

    def attach_file(self, run: Any, content: bytes | str, *, filename: str, title: str) -> None:
        """Upload a file (a watch chart) into the run's thread, after what is queued before it."""
        channel = self.channel_for(run)
        if channel is None:
            return
        self._lanes.submit(run.id, lambda: self.poster.send("files.upload_v2", channel=channel,
                                                            thread_ts=self._thread_ts(run.id), content=content,
                                                            filename=filename, title=title)).result(timeout=60)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything handed to the sender so far has been sent (tests, shutdown)."""
        self._lanes.drain(timeout=timeout)

    def close(self) -> None:
        self._lanes.close()
