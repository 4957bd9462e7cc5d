"""Step kinds for engine tests: real kinds with real effects (files), loaded as a plugin module.

Tests set `RUNBOOK_BOT_PLUGINS=tests.kinds` (subprocesses inherit it), exactly as a team would
load its own kinds; nothing in the engine is replaced.

- `test.touch`: appends a line to a file (mutating); rollback removes that line; verify re-reads.
- `test.block`: mutating; blocks until a release file exists (for crash and abort tests).
- `test.fail`: raises a StepError (mutating: false), or fails N times before succeeding.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bot.steps.base import Plan, PlanRefused, Result, StepError, StepKind, Verification, register


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
        silent: bool = False

    def plan(self, ctx, inputs):
        return Plan(summary="block until released")

    def apply(self, ctx, inputs, plan):
        Path(inputs.started).write_text("started")
        while not Path(inputs.release).exists():
            if inputs.silent:
                time.sleep(0.05)  # like a boto waiter or a slow socket: never calls back into the engine
            else:
                ctx.sleep(0.05)
        return Result(summary="released")


@register
class Phased(StepKind):
    """`test.phased`: a long step in phases, as db.copy reports them: `data` moves 0 -> 60 of 100 MiB,
    then `indexes` (done does not move) until the release file exists."""

    name = "test.phased"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        started: str
        release: str

    def plan(self, ctx, inputs):
        return Plan(summary="copy in phases")

    def apply(self, ctx, inputs, plan):
        for done in range(0, 61, 5):
            ctx.progress(done, 100, f"data: {done} MiB", unit="MiB", phase="data")
            ctx.sleep(0.1)
        Path(inputs.started).write_text("indexes")
        while not Path(inputs.release).exists():
            ctx.progress(60, 100, "indexes, constraints and triggers", unit="MiB", phase="indexes")
            ctx.sleep(0.1)
        ctx.progress(100, 100, "done", unit="MiB", phase="indexes")
        return Result(summary="copied")


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


@register
class Rewrite(StepKind):
    """`test.rewrite`: replace a file's content, recording the old content write-ahead.

    Switches make it fail the ways real steps fail: `fail_verify` (applied, then the check fails),
    `crash_midway` (half the new content written, then an exception), `write_ahead: false` (a kind
    that records nothing before changing things), `undo_breaks` (its rollback leaves a wrong file).
    """

    name = "test.rewrite"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        content: str
        fail_verify: bool = False
        crash_midway: bool = False
        write_ahead: bool = True
        undo_breaks: bool = False

    def plan(self, ctx, inputs):
        return Plan(summary=f"rewrite {inputs.path}")

    def apply(self, ctx, inputs, plan):
        path = Path(inputs.path)
        old = path.read_bytes().hex()
        if inputs.write_ahead:
            ctx.record_undo(old_hex=old)
        half = inputs.content[: len(inputs.content) // 2]
        path.write_text(half)
        if inputs.crash_midway:
            raise RuntimeError("crashed half-way through the rewrite")
        path.write_text(inputs.content)
        return Result(summary="rewritten", undo={"old_hex": old})

    def verify(self, ctx, inputs, result):
        if inputs.fail_verify:
            return Verification(ok=False, summary="the new content does not answer")
        return Verification(ok=Path(inputs.path).read_text() == inputs.content, summary="content checked")

    def rollback(self, ctx, inputs, result):
        data = bytes.fromhex(result.undo["old_hex"])
        Path(inputs.path).write_bytes(b"broken" if inputs.undo_breaks else data)
        return Result(summary="old content back")

    def verify_rollback(self, ctx, inputs, result, undo):
        ok = Path(inputs.path).read_bytes().hex() == result.undo["old_hex"]
        return Verification(ok=ok, summary="old content back" if ok else "the file is not as it was")


@register
class Refuse(StepKind):
    """`test.refuse`: its plan refuses (PlanRefused) until a file exists, like a TTL still too fresh."""

    name = "test.refuse"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        until: str

    def plan(self, ctx, inputs):
        if not Path(inputs.until).exists():
            raise PlanRefused(f"not before {inputs.until} exists")
        return Plan(summary="go")

    def apply(self, ctx, inputs, plan):
        return Result(summary="done", undo={"nothing": True})

    def rollback(self, ctx, inputs, result):
        return Result(summary="undone")
