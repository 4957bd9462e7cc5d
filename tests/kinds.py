"""Step kinds for engine tests: real kinds with real effects (files), loaded as a plugin module.

Tests set `RUNBOOK_BOT_PLUGINS=tests.kinds` (subprocesses inherit it), exactly as a team would
load its own kinds; nothing in the engine is replaced.

- `test.touch`: appends a line to a file (mutating); rollback removes that line; verify re-reads.
- `test.block`: mutating; blocks until a release file exists (for crash and abort tests).
- `test.fail`: raises a StepError (mutating: false), or fails N times before succeeding.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bot.steps.base import Plan, Result, StepError, StepKind, Verification, register


@register
class Touch(StepKind):
    name = "test.touch"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        line: str

    class Outputs(BaseModel):
        lines: int

    def plan(self, ctx, inputs):
        return Plan(summary=f"append {inputs.line!r} to {inputs.path}", data={"line": inputs.line})

    def apply(self, ctx, inputs, plan):
        path = Path(inputs.path)
        with path.open("a") as handle:
            handle.write(inputs.line + "\n")
        lines = path.read_text().splitlines()
        return Result(summary=f"{len(lines)} lines", outputs={"lines": len(lines)}, undo={"line": inputs.line})

    def verify(self, ctx, inputs, result):
        ok = inputs.line in Path(inputs.path).read_text().splitlines()
        return Verification(ok=ok, summary="line present" if ok else "line missing")

    def plan_rollback(self, ctx, inputs, result):
        return Plan(summary=f"remove {result.undo['line']!r} from {inputs.path}")

    def rollback(self, ctx, inputs, result):
        path = Path(inputs.path)
        lines = path.read_text().splitlines()
        lines.remove(result.undo["line"])
        path.write_text("".join(line + "\n" for line in lines))
        return Result(summary="line removed")

    def verify_rollback(self, ctx, inputs, result, undo):
        ok = result.undo["line"] not in Path(inputs.path).read_text().splitlines()
        return Verification(ok=ok, summary="line gone" if ok else "line still there")


@register
class Block(StepKind):
    name = "test.block"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        started: str
        release: str

    def plan(self, ctx, inputs):
        return Plan(summary="block until released")

    def apply(self, ctx, inputs, plan):
        Path(inputs.started).write_text("started")
        while not Path(inputs.release).exists():
            ctx.sleep(0.05)
        return Result(summary="released")


@register
class Fail(StepKind):
    name = "test.fail"
    mutating = False

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        message: str = "planned failure"
        counter: str | None = None
        succeed_after: int = 0

    def plan(self, ctx, inputs):
        return Plan(summary="fail on purpose")

    def apply(self, ctx, inputs, plan):
        if inputs.counter:
            path = Path(inputs.counter)
            count = int(path.read_text()) + 1 if path.exists() else 1
            path.write_text(str(count))
            if count > inputs.succeed_after > 0:
                return Result(summary=f"succeeded on try {count}")
        raise StepError(inputs.message)
