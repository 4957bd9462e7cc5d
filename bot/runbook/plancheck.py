"""Type-check every step's rendered inputs with a run's real parameters, before anything is asked.

    >>> problems = rendered_input_problems(loaded, {"secs": "soon"})
    >>> problems
    ['runbooks/x.yaml:9:18: steps[1].with.seconds: \\'soon\\' is not a duration (...)']

`validate` renders templates with probe values (a `string` parameter is "probe"), so
`seconds: "{{ params.secs }}"` passes it; with the run's real `secs=soon` the input is not a
duration. Without this check the run would ask for the first approval, apply it, and fail only
when it reached that step. The engine calls this once, when a run starts (and so `plan`): a run
whose inputs cannot be valid is refused before any step is planned or approved.

Inputs whose templates read `outputs` (values earlier steps have not produced yet) are rendered
with probe outputs of the declared types and their errors are left to plan time, exactly as the
loader does; everything else is checked with the real values.
"""

from __future__ import annotations

from typing import Any

import jinja2.meta
from pydantic import ValidationError

from bot.runbook.load import LoadedRunbook, _probe_outputs, format_path
from bot.runbook.render import (
    TemplateContext,
    TemplateNameError,
    TemplateSyntaxProblem,
    _environment,
    env_values,
    render_value,
    template_paths,
)
from bot.runbook.yamlsrc import Path_, parse_yaml


def _reads_outputs(text: str) -> bool:
    try:
        return "outputs" in jinja2.meta.find_undeclared_variables(_environment.parse(text))
    except jinja2.TemplateSyntaxError:
        return False


def _value_at(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def rendered_input_problems(loaded: LoadedRunbook, params: dict[str, Any]) -> list[str]:
    """`file:line:col: path: message` for each input that is invalid once rendered with `params`."""
    from bot.steps.base import kinds

    model = loaded.model
    found: list[tuple[Path_, str]] = []
    problems = found  # counted while checking; turned into lines (with the file's marks) at the end

    def add(path: Path_, message: str) -> None:
        found.append((path, message))

    env = env_values(model.env)
    base = TemplateContext(params=params, targets={}, env=env, outputs={})
    try:
        targets = {name: render_value(raw, base) for name, raw in model.targets.items()}
    except (TemplateNameError, TemplateSyntaxProblem) as exc:
        return [f"{loaded.path}: targets: {exc}"]
    registry = kinds()
    outputs: dict[str, dict[str, Any]] = {}
    entries: list[tuple[Path_, Any]] = []
    for i, step in enumerate(model.steps):
        entries.append((("steps", i), step))
        if step.rollback is not None:
            entries.append((("steps", i, "rollback"), step.rollback))
    entries += [(("rollback", i), step) for i, step in enumerate(model.rollback)]
    for path, spec in entries:
        kind_cls = registry.get(spec.kind)
        if kind_cls is None:
            continue
        later = {(*path, "with", *p) for p in template_paths(spec.with_)
                 if _reads_outputs(_value_at(spec.with_, p))}
        ctx = TemplateContext(params=params, targets=targets, env=env, outputs=dict(outputs))
        if len(path) == 2 and path[0] == "steps":
            outputs[spec.id] = _probe_outputs(kind_cls.Outputs)
        before = len(problems)
        for sub in template_paths(spec.with_):
            if (*path, "with", *sub) in later:
                continue
            try:
                render_value(_value_at(spec.with_, sub), ctx)
            except (TemplateNameError, TemplateSyntaxProblem) as exc:
                add((*path, "with", *sub), str(exc))
        if len(problems) > before:
            continue
        try:
            kind_cls.Inputs.model_validate(render_value(spec.with_, ctx))
        except (TemplateNameError, TemplateSyntaxProblem):
            pass  # only output-reading templates can fail here; they are checked at plan time
        except ValidationError as exc:
            for err in exc.errors():
                where = (*path, "with", *err["loc"])
                if not any(where[: len(t)] == t for t in later):
                    add(where, str(err["msg"]).removeprefix("Value error, "))
    if not found:
        return []
    doc = parse_yaml(loaded.text, loaded.path)  # only when there is something to point at
    return [f"{loaded.path}:{doc.mark(path)[0]}:{doc.mark(path)[1]}: {format_path(path)}: {message}"
            for path, message in found]
