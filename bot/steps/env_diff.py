"""`env.diff`: the environment matrix of two or more platforms; fails on unexplained gaps.

    - id: env-matrix
      kind: env.diff
      with:
        platforms: [old, new]          # target names; the first is the reference (old) side
        ignore: [PORT, "AWS_*"]        # fnmatch globs, dropped before judging
        expect_differ: [DATABASE_URL]  # must differ (the same value everywhere is a problem too)
        allow_missing: [ECS_*]         # may be absent on the new side (shown as a warning)

Read-only. The plan *is* the matrix (`Plan.table`: problems first; cells are keyed fingerprints,
never values) and `Plan.blocking` lists each unexplained `missing`/`differs`. `apply` has nothing
to change: it reads the sources again (time passes between plan and apply), returns the matrix as
its result (the full matrix as CSV-able rows in `Result.details["rows"]`) and raises `StepError`
with the list when problems remain, so the run stops at this step. See `bot.steps.envmatrix`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from bot.steps import envmatrix
from bot.steps.base import Plan, Result, StepError, StepKind, TargetRef, register


def _matrix(ctx: Any, inputs: EnvDiff.Inputs) -> envmatrix.Matrix:
    envs = {}
    for name in inputs.platforms:
        try:
            envs[name] = envmatrix.read_source(ctx.target(name))
        except ValueError as exc:  # a target whose platform has no environment: a runbook mistake
            raise StepError(f"env.diff: target {name!r}: {exc}") from None
        ctx.log(f"env.diff: read {len(envs[name].values)} variables from {name} ({envs[name].resource})")
    return envmatrix.build(envs, ignore=inputs.ignore, expect_differ=inputs.expect_differ,
                           allow_missing=inputs.allow_missing)


@register
class EnvDiff(StepKind):
    name = "env.diff"
    mutating = False
    idempotent = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")

        platforms: Annotated[list[str], TargetRef(capability="EnvSource")] = Field(
            min_length=2, description="Target names; the first is the reference (old) side")
        ignore: list[str] = Field(default_factory=list, description="Glob patterns of variables to leave out")
        expect_differ: list[str] = Field(default_factory=list, description="Variables that must differ (globs)")
        allow_missing: list[str] = Field(default_factory=list, description="Variables that may be absent (globs)")

    class Outputs(BaseModel):
        variables: int
        missing: list[str]
        differs: list[str]
        problems: list[str]

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        matrix = _matrix(ctx, inputs)
        return Plan(summary=matrix.summary(), table=matrix.table(), blocking=matrix.blocking(),
                    warnings=matrix.warnings(),
                    data={"counts": matrix.counts(), "problems": [r.name for r in matrix.problems()]})

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        matrix = _matrix(ctx, inputs)
        problems = matrix.blocking()
        if problems:
            raise StepError("environment differs: " + "; ".join(problems))
        outputs = self.Outputs(
            variables=len(matrix.rows),
            missing=[r.name for r in matrix.rows if r.state == "missing"],
            differs=[r.name for r in matrix.rows if r.state.startswith("differs")],
            problems=[],
        )
        return Result(summary=matrix.summary(), outputs=outputs.model_dump(), table=matrix.table(),
                      details={"columns": matrix.header(), "rows": matrix.csv_rows(),
                               "warnings": matrix.warnings(), "ignored": matrix.ignored})
