"""The step contract: plan, apply, verify, rollback.

A step kind is a class registered under its name. It declares a pydantic `Inputs` model (what the
runbook's `with:` block holds, after Jinja2 rendering), an `Outputs` model (what later steps may
refer to as `outputs.<step id>.<field>`) and whether it changes anything (`mutating`). The engine
calls it in this order, storing everything in between, so a restart can pick up after any call:

    plan(ctx, inputs)                 -> Plan           read-only; shown to people before approval
    apply(ctx, inputs, plan)          -> Result         the change; records what undoing it needs
    verify(ctx, inputs, result)       -> Verification   proves the change took
    plan_rollback(ctx, inputs, result) -> Plan          read-only; shown before the undo is approved
    rollback(ctx, inputs, result)     -> Result         undoes exactly what `apply` recorded
    verify_rollback(ctx, inputs, result, undo) -> Verification

Writing one:

    from pydantic import BaseModel
    from bot.steps.base import StepKind, Plan, Result, register

    @register
    class Echo(StepKind):
        name = "demo.echo"
        mutating = False

        class Inputs(BaseModel, extra="forbid"):
            text: str

        class Outputs(BaseModel):
            length: int

        def plan(self, ctx, inputs):
            return Plan(summary=f"echo {len(inputs.text)} characters")

        def apply(self, ctx, inputs, plan):
            return Result(summary="echoed", outputs={"length": len(inputs.text)})

What a kind must never do: print or return a secret value (show `bot.secrets.fingerprint`),
import an SDK (ask `bot.platforms` for an adapter), or catch an exception it has no plan for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class TargetRef:
    """Marks an `Inputs` field whose value names a runbook target; the loader checks it exists.

        class Inputs(BaseModel, extra="forbid"):
            target: Annotated[str, TargetRef(platforms=("aws-ecs", "do-app", "heroku"))]
            platforms: Annotated[list[str], TargetRef()]

    `allow_attribute=True` accepts `name.attribute` (e.g. `old.database`) and checks the name part.
    """

    platforms: tuple[str, ...] = ()
    allow_attribute: bool = False


class StepError(Exception):
    """A step failed in a way it understands; the message is shown to people as it is."""


class PlanRefused(StepError):
    """The plan found a reason not to go ahead (a pooler in front of the target, a TTL too high)."""


class Change(BaseModel):
    """One line of a plan: what will change, from what, to what (values masked or fingerprinted)."""

    model_config = ConfigDict(extra="forbid")

    action: str  # "set", "create", "update", "scale", "switch", "copy", ...
    resource: str
    before: str | None = None
    after: str | None = None
    detail: str | None = None


class Plan(BaseModel):
    """What `apply` would do, computed with read-only calls only.

    `data` is handed back to `apply` (it is stored, so it must be JSON-able and free of secrets);
    `blocking` lists reasons the step must not proceed; `table` is an optional matrix for display
    (a header row then data rows) that the front ends render as a table.
    """

    model_config = ConfigDict(extra="forbid")

    summary: str
    changes: list[Change] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    blocking: list[str] = Field(default_factory=list)
    table: list[list[str]] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    no_op: bool = False


class Result(BaseModel):
    """What `apply` (or `rollback`) did. `undo` is what `rollback` needs; `outputs` feed later steps."""

    model_config = ConfigDict(extra="forbid")

    summary: str
    outputs: dict[str, Any] = Field(default_factory=dict)
    undo: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    table: list[list[str]] | None = None


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    table: list[list[str]] | None = None


class NoOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepKind:
    """Base class of every step kind. Override `plan` and `apply`; the rest have safe defaults."""

    name: ClassVar[str]
    mutating: ClassVar[bool] = True
    # A kind whose `apply` can safely be re-run after a crash may say so; the engine still asks a
    # person before re-running an interrupted step, but offers "retry" as the first choice
    # (`StepView.offers`); any other kind offers "verify" first and warns that a retry may apply twice.
    idempotent: ClassVar[bool] = False
    # A kind whose failed or interrupted `apply` can leave a half-state (a partial copy) says so; a run's
    # rollback then includes the failed step, calling `plan_rollback`/`rollback` with an empty `Result`.
    undoes_failure: ClassVar[bool] = False
    Inputs: ClassVar[type[BaseModel]]
    Outputs: ClassVar[type[BaseModel]] = NoOutputs

    def plan(self, ctx: Any, inputs: Any) -> Plan:
        raise NotImplementedError

    def apply(self, ctx: Any, inputs: Any, plan: Plan) -> Result:
        raise NotImplementedError

    def verify(self, ctx: Any, inputs: Any, result: Result) -> Verification | None:
        """Return None when there is nothing beyond `apply` to prove."""
        return None

    def can_rollback(self) -> bool:
        """True when the kind implements `rollback` (read-only kinds have nothing to undo)."""
        return type(self).rollback is not StepKind.rollback

    def plan_rollback(self, ctx: Any, inputs: Any, result: Result) -> Plan:
        return Plan(summary=f"undo {self.name}: {result.summary}", data={})

    def rollback(self, ctx: Any, inputs: Any, result: Result) -> Result:
        raise NotImplementedError

    def verify_rollback(self, ctx: Any, inputs: Any, result: Result, undo: Result) -> Verification | None:
        return None


REGISTRY: dict[str, type[StepKind]] = {}


def register(cls: type[StepKind]) -> type[StepKind]:
    """Class decorator: make a kind available to runbooks under `cls.name`."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no `name`")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise TypeError(f"step kind {name!r} registered twice ({REGISTRY[name].__name__}, {cls.__name__})")
    if not hasattr(cls, "Inputs"):
        raise TypeError(f"step kind {name!r} has no Inputs model")
    REGISTRY[name] = cls
    return cls


_plugins_loaded: set[str] = set()


def kinds() -> dict[str, type[StepKind]]:
    """All registered kinds: the shipped ones (importing `bot.steps` registers them) plus plugin modules
    named in `RUNBOOK_BOT_PLUGINS` (comma-separated module paths), for a team's own kinds."""
    import importlib
    import os

    import bot.steps  # noqa: F401  (registration side effect)

    for module in filter(None, (m.strip() for m in os.environ.get("RUNBOOK_BOT_PLUGINS", "").split(","))):
        if module not in _plugins_loaded:
            importlib.import_module(module)
            _plugins_loaded.add(module)
    return dict(REGISTRY)


def get_kind(name: str) -> StepKind:
    return kinds()[name]()


ProgressFn = Callable[..., None]
