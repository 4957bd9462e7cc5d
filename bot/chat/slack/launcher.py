"""The launcher: a modal generated from a runbook's typed `params`, validated like the loader does.

    from bot.chat.slack import launcher
    choices = launcher.catalogue(runbooks_dir)                  # every runbook, loaded (cached by mtime)
    view = launcher.form_view(choices, selected="demo", channel="C1")   # Block Kit modal dict
    typed, errors = launcher.read_form(choices["demo"].model, view_state)
    errors  # {"param:replicas": "expected an integer, got 'x'"}: Slack shows them under each input

The form is built from the model (`bot.runbook.model.Param`) for every runbook, never per runbook:
`choice` -> static select, `bool` -> a checkbox, `int` -> a number input, `string` -> plain text,
with the param's description as the input's hint. Values are checked by `Param.coerce` and
`Param.is_required`, the very rules the loader and the engine apply to `k=v` arguments, so the form
can never accept what `/runbook run NAME k=v` would refuse.

No bolt here: listeners (`bot.chat.slack.listeners.launch`) call these builders and readers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.chat.slack import messages
from bot.chat.slack.ids import Block
from bot.runbook.load import RunbookInvalid, find_runbooks, load_runbook
from bot.runbook.model import Param, Runbook

log = logging.getLogger(__name__)

MAX_OPTIONS = 100  # Slack's static select limit


@dataclass
class Choice:
    name: str
    path: Path
    model: Runbook | None
    error: str | None = None


_cache: dict[tuple[str, int, int], Choice] = {}
_cache_lock = threading.Lock()


def catalogue(directory: str | Path) -> dict[str, Choice]:
    """Every runbook in `directory`, loaded; a file is re-read only when its mtime or size changed
    (the modal must open within the 3 s a trigger id lives)."""
    directory = Path(directory)
    found = find_runbooks(directory) if directory.is_dir() else {}
    out: dict[str, Choice] = {}
    for name, path in sorted(found.items())[:MAX_OPTIONS]:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with _cache_lock:
            choice = _cache.get(key)
        if choice is None:
            try:
                choice = Choice(name, path, load_runbook(path).model)
            except RunbookInvalid as exc:
                choice = Choice(name, path, None, f"{len(exc.errors)} problem(s): {exc.errors[0]}")
            with _cache_lock:
                _cache[key] = choice
        out[name] = choice
    return out


def param_block_id(name: str) -> str:
    return f"{Block.PARAM_PREFIX.value}{name}"


def field_kind(param: Param) -> str:
    """Which Block Kit element a param becomes."""
    return {"choice": "static_select", "bool": "checkboxes", "int": "number_input"}.get(param.type,
                                                                                         "plain_text_input")


def metadata(*, channel: str | None, runbook: str | None = None, **extra: Any) -> str:
    data = {"channel": channel, "runbook": runbook, **extra}
    text = json.dumps(data, separators=(",", ":"))
    if len(text) > 3000:  # Slack's private_metadata limit
        raise ValueError(f"launcher metadata of {len(text)} characters exceeds Slack's 3000")
    return text


def form_view(choices: dict[str, Choice], *, selected: str | None, channel: str | None,
              values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The launcher modal: the runbook select, then (once one is picked) its params as inputs.

    `channel`: where the run's thread goes (a slash command's channel); None asks for one."""
    return messages.render("launcher_form", form_context(choices, selected=selected, channel=channel,
                                                         values=values)).view or {}


def form_context(choices: dict[str, Choice], *, selected: str | None, channel: str | None,
                 values: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `templates/slack/launcher_form.json.j2` renders: one field per param, typed by the model."""
    choice = choices.get(selected) if selected else None
    fields = []
    if choice is not None and choice.model is not None:
        for name, param in choice.model.params.items():
            default = (values or {}).get(name, param.default)
            fields.append({"name": name, "block_id": param_block_id(name), "param": param, "kind": field_kind(param),
                           "default": default, "optional": not param.is_required or param.type == "bool"})
    return {"choices": list(choices.values())[:MAX_OPTIONS], "selected": choice, "fields": fields, "ask_channel": channel is None,
            "metadata": metadata(channel=channel, runbook=choice.name if choice else None)}


def _raw_value(element: dict[str, Any]) -> Any:
    kind = element.get("type")
    if kind == "static_select":
        option = element.get("selected_option") or {}
        return option.get("value")
    if kind == "checkboxes":
        return bool(element.get("selected_options"))
    if kind == "conversations_select":
        return element.get("selected_conversation")
    value = element.get("value")
    return None if value is None or str(value).strip() == "" else value


def read_form(model: Runbook, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The typed params from a submitted form, and the errors to show under each input.

    >>> from bot.runbook.model import Runbook
    >>> rb = Runbook.model_validate({"name": "x", "params": {"n": {"type": "int"}},
    ...                              "steps": [{"id": "a", "kind": "wait", "with": {"seconds": 1}}]})
    >>> read_form(rb, {"values": {"param:n": {"value": {"type": "number_input", "value": "4"}}}})
    ({'n': 4}, {})
    """
    values = (state or {}).get("values") or {}
    typed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, param in model.params.items():
        block_id = param_block_id(name)
        element = (values.get(block_id) or {}).get(Block.PARAM_ACTION.value) or {}
        raw = _raw_value(element)
        if raw is None:
            if param.default is not None:
                typed[name] = param.coerce(param.default)
            elif param.is_required:
                errors[block_id] = f"{name} is required ({param.type})"
            continue
        try:
            typed[name] = param.coerce(raw)
        except ValueError as exc:
            errors[block_id] = f"{name}: {exc}"[:150]
    return typed, errors


def read_channel(state: dict[str, Any], fallback: str | None) -> str | None:
    values = (state or {}).get("values") or {}
    element = (values.get(Block.LAUNCH_CHANNEL.value) or {}).get(Block.PARAM_ACTION.value) or {}
    return element.get("selected_conversation") or fallback


# -- the flow: open -> pick -> submit (validate) -> plan (dry run) -> Start ----------------------------

FINAL = ("succeeded", "failed", "aborted", "rolled_back")


class LaunchFlow:
    """What the launcher's listeners call; `service` is the `SlackService` (runner, store, runbooks).

        flow = LaunchFlow(service, client)
        flow.open(trigger_id, channel="C1")                 # views.open, right after the ack
        ack_kwargs, job = flow.submitted(view, user="U1")   # errors inline, or the "planning" screen
        flow.show_plans_later(view_id, job)                 # after the ack: wait for the dry run, views.update
        ack_kwargs = flow.start(view, user="U1")            # the Start button (the plan modal's submit)
    """

    def __init__(self, service: Any, client: Any, *, plan_timeout: float = 120.0) -> None:
        self.service = service
        self.client = client
        self.plan_timeout = plan_timeout

    def choices(self) -> dict[str, Choice]:
        return catalogue(self.service.runbooks_dir())

    def needs_form(self, name: str) -> bool:
        """`/runbook run NAME` alone, for a runbook with a required param: the form asks for it."""
        choice = self.choices().get(name)
        return bool(choice and choice.model and any(p.is_required for p in choice.model.params.values()))

    def open(self, trigger_id: str, *, channel: str | None, selected: str | None = None) -> None:
        self.client.views_open(trigger_id=trigger_id, view=form_view(self.choices(), selected=selected,
                                                                     channel=channel))

    def picked(self, view: dict[str, Any], selected: str) -> None:
        meta = _meta(view)
        self.client.views_update(view_id=view["id"], hash=view.get("hash"),
                                 view=form_view(self.choices(), selected=selected, channel=meta.get("channel")))

    def submitted(self, view: dict[str, Any], *, user: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The form's submission: (ack kwargs, work to do after the ack or None)."""
        meta = _meta(view)
        choice = self.choices().get(meta.get("runbook") or "") if isinstance(meta.get("runbook"), str) else None
        if choice is None or choice.model is None:
            return {"response_action": "errors",
                    "errors": {Block.LAUNCH_RUNBOOK.value: "pick a runbook that loads"}}, None
        state = view.get("state") or {}
        typed, errors = read_form(choice.model, state)
        if errors:
            return {"response_action": "errors", "errors": errors}, None
        channel = read_channel(state, meta.get("channel") or self.service.default_channel())
        plan_meta = {"runbook": choice.name, "params": typed, "channel": channel}
        try:
            metadata(**plan_meta)
        except ValueError:  # the values travel in the modal's private_metadata (3000 characters)
            longest = max(typed, key=lambda k: len(str(typed[k])))
            return {"response_action": "errors",
                    "errors": {param_block_id(longest): "too long: the values together must stay under "
                                                        "about 2500 characters"}}, None
        # The engine's own checks, inline: a dry run is stored and planned only if the params pass
        # everything `/runbook run NAME k=v` would (types, required, targets rendered with them).
        from bot.engine.runner import StartRefused

        try:
            run = self.service.runner.start(str(choice.path), typed, started_by=user, front_end="slack",
                                            chat={"quiet": True, "launcher": True}, dry_run=True)
        except StartRefused as exc:
            return {"response_action": "errors", "errors": refusal_errors(choice.model, str(exc))}, None
        screen = plan_view(phase="planning", **plan_meta)
        return {"response_action": "update", "view": screen}, {"preview": run.id, "meta": plan_meta}

    def show_plans_later(self, view_id: str, job: dict[str, Any]) -> None:
        """After the ack: wait for the dry run on a thread of its own (planning makes real read-only calls
        and may take a while; the few work-pool threads answer everyone's clicks), then show the plans."""
        threading.Thread(target=self._show_plans, args=(view_id, job["preview"], job["meta"]), daemon=True,
                         name=f"launcher-{job['preview']}").start()

    def _show_plans(self, view_id: str, preview_id: str, meta: dict[str, Any]) -> None:
        try:
            view = self._wait_final(preview_id)
            self.client.views_update(view_id=view_id, view=plan_view(phase="ready", steps=view.steps,
                                                                     preview=preview_id, **meta))
        except Exception:  # nobody waits on this thread: say it in the log, loudly
            log.exception("launcher: showing the plans of %s failed", preview_id)

    def _wait_final(self, run_id: str) -> Any:
        deadline = time.monotonic() + self.plan_timeout
        while time.monotonic() < deadline:
            row = self.service.store.get_run(run_id)
            if row is not None and row["state"] in FINAL:
                break
            time.sleep(0.05)
        return self.service.runner.view(run_id)

    def start(self, view: dict[str, Any], *, user: str) -> dict[str, Any]:
        """Start: the real run, with the typed params the form produced; the modal says where it is."""
        from bot.engine.runner import StartRefused

        meta = _meta(view)
        choice = self.choices().get(meta.get("runbook") or "") if isinstance(meta.get("runbook"), str) else None
        if not isinstance(meta.get("params"), dict):
            meta["params"] = {}
        base = {"runbook": meta.get("runbook"), "params": meta.get("params") or {}, "channel": meta.get("channel")}
        if choice is None:
            return {"response_action": "update", "view": plan_view(phase="refused", error="the runbook is gone",
                                                                   **base)}
        try:
            run = self.service.runner.start(str(choice.path), base["params"], started_by=user, front_end="slack",
                                            chat={"channel": base["channel"], "started_by": user})
        except StartRefused as exc:
            return {"response_action": "update", "view": plan_view(phase="refused", error=str(exc), **base)}
        return {"response_action": "update", "view": plan_view(phase="started", run_id=run.id, **base)}


def refusal_errors(model: Runbook, message: str) -> dict[str, str]:
    """The engine's refusal, under the input it is about (the first one it names; else the first input)."""
    import re

    for name in model.params:
        if re.search(rf"(?:parameter |params\.){re.escape(name)}\b|'{re.escape(name)}'", message):
            return {param_block_id(name): message[:150]}
    first = next(iter(model.params), None)
    return {param_block_id(first) if first else Block.LAUNCH_RUNBOOK.value: message[:150]}


def _meta(view: dict[str, Any]) -> dict[str, Any]:
    """The launcher's private_metadata; anything unreadable counts as empty (nothing picked, no channel)."""
    from bot.chat.slack.listeners.views._meta import metadata as read

    meta = read(view) or {}
    if not isinstance(meta.get("channel"), (str, type(None))):
        meta["channel"] = None
    return meta


def plan_view(*, phase: str, runbook: str, params: dict[str, Any], channel: str | None, steps: Any = (),
              preview: str | None = None, run_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    return messages.render("launcher_plan", plan_context(phase=phase, runbook=runbook, params=params,
                                                         channel=channel, steps=steps, preview=preview,
                                                         run_id=run_id, error=error)).view or {}


def plan_context(*, phase: str, runbook: str, params: dict[str, Any], channel: str | None, steps: Any = (),
                 preview: str | None = None, run_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    return {"phase": phase, "runbook": runbook, "params": params, "channel": channel, "steps": list(steps),
            "preview": preview, "run_id": run_id, "error": error,
            "metadata": metadata(channel=channel, runbook=runbook, params=params)}
