"""Load a runbook file and report every problem at once, each with its file, line, column and field.

    >>> from bot.runbook.load import load_runbook, RunbookInvalid
    >>> try:
    ...     loaded = load_runbook("runbooks/broken.yaml")
    ... except RunbookInvalid as exc:
    ...     print(exc)          # runbooks/broken.yaml:12:7: steps[1].with.recrd: unknown field ...

What is checked before anything runs:
- YAML syntax and duplicate keys;
- the shape (`bot.runbook.model`): unknown keys, wrong types, unknown step kinds;
- duplicate step ids; each target's platform and fields; approval policies a step names;
- every template: syntax, and every name it uses (`params.x`, `targets.y.z`, `env.NAME`,
  `outputs.<earlier step>.<declared output>`) rendered against probe values;
- each step's `with:` against its kind's `Inputs` model (values that are templates are type-checked
  again, with real values, when the step is planned);
- target references (`Inputs` fields marked `TargetRef`) name a target of an allowed platform;
- a step that changes something has an approval policy, or says `approval: false`.
Lint warnings (not errors) come from rules registered in `LINT_RULES`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.runbook import targets as target_models
from bot.runbook.model import ApprovalPolicy, Param, Runbook, Step, StepApproval
from bot.runbook.render import (
    TemplateContext,
    TemplateNameError,
    TemplateSyntaxProblem,
    is_template,
    render_value,
    template_paths,
)
from bot.runbook.yamlsrc import Path_, YamlDoc, parse_yaml

SCHEMA_COMMENT = "# yaml-language-server: $schema="
# The largest runbook in the repository is a few KB; past this, a file is a mistake or an attack.
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, order=True)
class LoadError:
    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class RunbookInvalid(Exception):
    def __init__(self, errors: list[LoadError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass
class LoadedRunbook:
    model: Runbook
    path: str
    sha256: str
    text: str
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Collector:
    def __init__(self, file: str, doc: YamlDoc) -> None:
        self.file = file
        self.doc = doc
        self.errors: list[LoadError] = []

    def add(self, path: Path_, message: str, *, key: bool = False) -> None:
        line, col = self.doc.mark(path, key=key)
        self.errors.append(LoadError(self.file, line, col, format_path(path), message))

    def add_validation(self, base: Path_, exc: ValidationError, *, skip: Callable[[Path_], bool] | None = None) -> None:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _is_union_tag(p)))
            path = (*base, *loc)
            if skip and skip(path):
                continue
            message = _message(err)
            self.add(path, message, key=err["type"] == "extra_forbidden")


def _is_union_tag(part: str) -> bool:
    # pydantic puts the union member's name in the location ("StepApproval", "str", "literal[False]")
    return part in ("str", "literal[False]", "StepApproval", "function-before[_retries_shorthand(), Retries]") or \
        part.startswith("function-") or part.startswith("literal[")


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


# -- lint rules: functions (LoadedRunbook-in-progress model) -> list of warnings --------------------

LintRule = Callable[[Runbook], list[str]]
LINT_RULES: list[LintRule] = []


def lint_rule(fn: LintRule) -> LintRule:
    LINT_RULES.append(fn)
    return fn


# -- probes -----------------------------------------------------------------------------------------

def _probe_param(param: Param) -> Any:
    if param.default is not None:
        return param.coerce(param.default)
    return {"int": 1, "bool": True, "choice": (param.choices or ["x"])[0]}.get(param.type, "probe")


def _probe_outputs(model: type[BaseModel]) -> dict[str, Any]:
    samples: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        origin = getattr(ann, "__origin__", None)
        if ann is int:
            samples[name] = 0
        elif ann is float:
            samples[name] = 0.0
        elif ann is bool:
            samples[name] = False
        elif ann is list or origin is list:
            samples[name] = []
        elif ann is dict or origin is dict:
            samples[name] = {}
        else:
            samples[name] = "probe"
    return samples


# -- target references ----------------------------------------------------------------------------

def _check_target_refs(col: _Collector, base: Path_, model: BaseModel, targets: dict[str, Any],
                       templated: set[Path_]) -> None:
    from bot.steps.base import TargetRef

    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        alias = info.alias or name
        path = (*base, alias)
        refs = [m for m in info.metadata if isinstance(m, TargetRef)]
        if refs:
            ref = refs[0]
            values = value if isinstance(value, list) else [value]
            for i, item in enumerate(values):
                item_path = (*path, i) if isinstance(value, list) else path
                if item is None or item_path in templated or path in templated:
                    continue
                ref_name = str(item).split(".", 1)[0] if ref.allow_attribute else str(item)
                if ref_name not in targets:
                    close = get_close_matches(ref_name, list(targets), n=2)
                    hint = f"; did you mean {', '.join(close)}?" if close else \
                        f"; targets are: {', '.join(targets) or 'none'}"
                    col.add(item_path, f"unknown target {ref_name!r}{hint}")
                elif ref.platforms and targets[ref_name].platform not in ref.platforms:
                    col.add(item_path, f"target {ref_name!r} is {targets[ref_name].platform}; this field takes "
                                       f"{', '.join(ref.platforms)}")
        elif isinstance(value, BaseModel):
            _check_target_refs(col, path, value, targets, templated)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _check_target_refs(col, (*path, i), item, targets, templated)


# -- the loader -----------------------------------------------------------------------------------

_cache: dict[tuple[str, str, frozenset[str]], LoadedRunbook] = {}
_CACHE_SIZE = 64


def load_text(text: str, file: str = "<string>") -> LoadedRunbook:
    """Validate runbook text; raise `RunbookInvalid` listing every error.

    A text already validated (same file name, same bytes, same registered kinds) is not parsed
    again: runs of one runbook share its validated model, which nothing mutates.
    """
    from bot.steps.base import kinds

    key = (file, hashlib.sha256(text.encode()).hexdigest(), frozenset(kinds()))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    loaded = _load_text(text, file)
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[key] = loaded
    return loaded


def _load_text(text: str, file: str) -> LoadedRunbook:
    from bot.steps.base import kinds

    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise RunbookInvalid([LoadError(file, 1, 1, "", f"the file is {size} bytes; a runbook may be at most "
                                                        f"{MAX_FILE_BYTES} bytes (1 MiB)")])
    doc = parse_yaml(text, file)
    col = _Collector(file, doc)
    for issue in doc.issues:
        col.errors.append(LoadError(file, issue.line, issue.col, format_path(issue.path), issue.message))
    if doc.data is None:
        raise RunbookInvalid(col.errors or [LoadError(file, 1, 1, "", "the file is empty")])
    if not isinstance(doc.data, dict):
        col.add((), "a runbook is a mapping with name, steps, ...")
        raise RunbookInvalid(col.errors)
    data: dict[str, Any] = doc.data

    # 1. The shape, section by section, so one bad step does not hide the others' problems.
    header_data = {k: v for k, v in data.items() if k not in ("steps", "rollback")}
    try:
        header = Runbook.model_validate({**header_data, "steps": [{"id": "placeholder", "kind": "wait",
                                                                    "with": {"seconds": 0}}]})
    except ValidationError as exc:
        col.add_validation((), exc, skip=lambda p: bool(p) and p[0] in ("steps", "rollback"))
        header = None
    steps: list[tuple[Path_, Step]] = []
    for section in ("steps", "rollback"):
        raw_steps = data.get(section, [] if section == "rollback" else None)
        if raw_steps is None:
            col.add((), "required field is missing: steps")
            continue
        if not isinstance(raw_steps, list):
            col.add((section,), "expected a list of steps")
            continue
        if section == "steps" and not raw_steps:
            col.add((section,), "a runbook needs at least one step")
        for i, raw in enumerate(raw_steps):
            try:
                steps.append(((section, i), Step.model_validate(raw)))
            except ValidationError as exc:
                col.add_validation((section, i), exc)

    # 2. Duplicate ids.
    seen: dict[str, Path_] = {}
    for path, step in steps:
        if step.id in seen:
            first = doc.mark((*seen[step.id], "id"))[0]
            col.add((*path, "id"), f"duplicate step id {step.id!r} (first at line {first})")
        else:
            seen[step.id] = path

    params: dict[str, Param] = header.params if header else {}
    probe_params = {}
    for name, param in params.items():
        probe_params[name] = _probe_param(param)
    env_names = header.env if header else []
    probe_env = {entry.name: f"probe-{entry.name.lower()}" for entry in env_names}

    # 3. Targets: render against params/env probes, then validate with the platform's model.
    parsed_targets: dict[str, Any] = {}
    rendered_targets: dict[str, dict[str, Any]] = {}
    raw_targets = data.get("targets") if isinstance(data.get("targets"), dict) else {}
    base_ctx = TemplateContext(params=probe_params, targets={}, env=probe_env, outputs={})
    for tname, raw in raw_targets.items():
        tpath: Path_ = ("targets", tname)
        if not isinstance(raw, dict):
            col.add(tpath, "a target is a mapping with `platform` and its fields")
            continue
        platform = raw.get("platform")
        model = target_models.target_model(str(platform)) if platform else None
        if model is None:
            known = ", ".join(sorted(target_models.TARGETS))
            col.add((*tpath, "platform"), f"unknown platform {platform!r}; known: {known}" if platform
                    else f"required field is missing (one of: {known})")
            continue
        rendered = _render_checked(col, tpath, raw, base_ctx)
        if rendered is None:
            rendered_targets[tname] = raw  # reported already; keep it so steps' references do not cascade
            continue
        templated = {(*tpath, *p) for p in template_paths(raw)}
        try:
            parsed_targets[tname] = model.model_validate(rendered)
            rendered_targets[tname] = rendered
        except ValidationError as exc:
            col.add_validation(tpath, exc, skip=lambda p: p in templated)
            rendered_targets[tname] = rendered

    # 4. Steps: approval policies, templates, inputs, target references, outputs of earlier steps.
    registry = kinds()
    approvals: dict[str, ApprovalPolicy] = header.approvals if header else {}
    outputs_probe: dict[str, dict[str, Any]] = {}
    for path, step in steps:
        kind_cls = registry[step.kind]
        _check_approval(col, path, step.approval, approvals, kind_cls.mutating)
        ctx = TemplateContext(params=probe_params, targets=rendered_targets, env=probe_env,
                              outputs=dict(outputs_probe))
        raw_step = _raw_at(data, path)
        raw_with = raw_step.get("with", {}) if isinstance(raw_step, dict) else {}
        _validate_inputs(col, (*path, "with"), kind_cls, raw_with, ctx, parsed_targets)
        if isinstance(step.approval, StepApproval) and step.approval.confirm_text:
            _render_checked(col, (*path, "approval", "confirm_text"), step.approval.confirm_text, ctx)
        if step.rollback is not None:
            rb_kind = registry.get(step.rollback.kind)
            if rb_kind is None:
                close = get_close_matches(step.rollback.kind, list(registry), n=3)
                col.add((*path, "rollback", "kind"), f"unknown step kind {step.rollback.kind!r}"
                        + (f"; did you mean {', '.join(close)}?" if close else ""))
            else:
                rb_raw = raw_step.get("rollback", {}).get("with", {}) if isinstance(raw_step, dict) else {}
                _validate_inputs(col, (*path, "rollback", "with"), rb_kind, rb_raw, ctx, parsed_targets)
                _check_approval(col, (*path, "rollback"), step.rollback.approval, approvals, rb_kind.mutating)
        if path[0] == "steps":
            outputs_probe[step.id] = _probe_outputs(kind_cls.Outputs)
        if step.on_failure == "rollback" and path[0] == "rollback":
            col.add((*path, "on_failure"), "a rollback step cannot itself roll back on failure")

    if header and header.watch is not None:
        _validate_watch(col, header.watch)

    if col.errors:
        raise RunbookInvalid(col.errors)
    assert header is not None
    model = Runbook.model_validate({**data})
    loaded = LoadedRunbook(model=model, path=file, sha256=hashlib.sha256(text.encode()).hexdigest(), text=text)
    for rule in LINT_RULES:
        loaded.warnings.extend(rule(model))
    return loaded


def _raw_at(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _render_checked(col: _Collector, path: Path_, raw: Any, ctx: TemplateContext) -> Any:
    """Render with probe values; report each template's own problem at its own line."""
    problems = False
    for sub in template_paths(raw):
        value = _raw_at(raw, sub)
        try:
            render_value(value, ctx)
        except (TemplateNameError, TemplateSyntaxProblem) as exc:
            col.add((*path, *sub), str(exc))
            problems = True
    if problems:
        return None
    return render_value(raw, ctx)


def _check_approval(col: _Collector, path: Path_, spec: Any, approvals: dict[str, ApprovalPolicy],
                    mutating: bool) -> None:
    name = spec if isinstance(spec, str) else (spec.use if isinstance(spec, StepApproval) else None)
    if name is not None and name not in approvals:
        col.add((*path, "approval"), f"no approval policy named {name!r} under `approvals`"
                + (f" (defined: {', '.join(approvals)})" if approvals else ""))
        return
    if spec is False or not mutating:
        return
    policy = approvals.get(name or "default")
    approvers = (spec.approvers if isinstance(spec, StepApproval) and spec.approvers else None) or \
        (policy.approvers if policy else None)
    if not approvers:
        col.add((*path, "kind"), "this step changes something and no approvers apply to it: add "
                "`approvals.default` (or a policy it names), or say `approval: false` to run it unapproved")


def _validate_inputs(col: _Collector, path: Path_, kind_cls: Any, raw_with: Any, ctx: TemplateContext,
                     parsed_targets: dict[str, Any]) -> None:
    if not isinstance(raw_with, dict):
        col.add(path, "`with` is a mapping of the step's inputs")
        return
    rendered = _render_checked(col, path, raw_with, ctx)
    if rendered is None:
        return
    templated = {(*path, *p) for p in template_paths(raw_with)}

    def under_template(p: Path_) -> bool:
        return any(p[: len(t)] == t for t in templated)

    try:
        inputs = kind_cls.Inputs.model_validate(rendered)
    except ValidationError as exc:
        col.add_validation(path, exc, skip=under_template)
        return
    _check_target_refs(col, path, inputs, parsed_targets, templated)


def _validate_watch(col: _Collector, watch: dict[str, Any]) -> None:
    from bot.watch.spec import WatchSpec  # the watch block's own model (imported here: watch imports runbook)

    try:
        WatchSpec.model_validate(watch)
    except ValidationError as exc:
        col.add_validation(("watch",), exc)


def load_runbook(path: str | Path) -> LoadedRunbook:
    """Load and validate one runbook file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:  # refuse before reading: the file may be huge
            raise RunbookInvalid([LoadError(str(path), 1, 1, "", f"the file is {size} bytes; a runbook may be at "
                                                                 f"most {MAX_FILE_BYTES} bytes (1 MiB)")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookInvalid([LoadError(str(path), 1, 1, "", "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise RunbookInvalid([LoadError(str(path), 1, 1, "", f"not UTF-8 text: {exc.reason}")]) from None
    return load_text(text, str(path))


def find_runbooks(directory: str | Path) -> dict[str, Path]:
    """Runbook names (file stems) to paths, for `run NAME` and suggestions."""
    directory = Path(directory)
    found: dict[str, Path] = {}
    for pattern in ("*.yaml", "*.yml"):
        for file in sorted(directory.glob(pattern)):
            found.setdefault(file.stem, file)
    return found


def resolve_runbook(name_or_path: str | Path, directory: str | Path) -> Path:
    """A path as given, or a runbook by name in `directory`; LookupError with close matches."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    found = find_runbooks(directory)
    if str(name_or_path) in found:
        return found[str(name_or_path)]
    close = get_close_matches(str(name_or_path), list(found), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(found) or 'none'}"
    raise LookupError(f"no runbook named {name_or_path!r} in {directory}{hint}")
