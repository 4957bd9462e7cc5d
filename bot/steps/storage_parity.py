"""`storage.parity`: is the new object store really a copy of the old one?

    - id: spaces-parity
      kind: storage.parity
      with:
        source: old-bucket            # an aws-s3 or do-spaces target
        target: new-spaces
        required_keys: [models/projection-v7.bin]   # must exist on both sides, or the step fails
        compare_etags: true

Read-only. The plan heads each `required_keys` object on both sides (the seed's model file that
was never synced, whose 404 a bare `except` hid) and blocks when one is absent. `apply` streams
both listings and merge-joins them in key order (S3 and Spaces list in UTF-8 byte order, the order
of Python's `str`): memory stays at one page per side however many keys there are, and a
listing found out of order is an error rather than a wrong answer. It reports keys missing on
either side, size mismatches, and ETag mismatches where both ETags are single-part MD5s.
Multipart ETags (`<md5>-<parts>`) are not MD5s of the content, so such pairs are compared by size
(and part count, which is reported but not judged: it depends on the uploader's part size), and the
result says how many were. Missing on the target and mismatches fail the step unless
`fail_on_differences: false`; keys only on the target are reported, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from bot.platforms import errors, registry
from bot.platforms.aws.s3 import ObjectInfo
from bot.platforms.capabilities import OBJECT_STORE
from bot.steps.base import Plan, Result, StepError, StepKind, TargetRef, register



@dataclass
class ParityReport:
    """Counts of everything, examples (capped) of each kind of difference."""

    examples_cap: int = 50
    source_keys: int = 0
    target_keys: int = 0
    matched: int = 0
    compared_by_size: int = 0  # pairs where a multipart ETag made the MD5 useless
    missing_on_target: list[str] = field(default_factory=list)
    missing_on_source: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    etag_mismatch: list[str] = field(default_factory=list)
    part_count_differs: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, key: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        bucket = getattr(self, kind)
        if len(bucket) < self.examples_cap:
            bucket.append(key)

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    def problems(self) -> list[str]:
        out = []
        for kind, label in (("missing_on_target", "missing on the target"), ("size_mismatch", "size differs"),
                            ("etag_mismatch", "ETag (MD5) differs")):
            n = self.count(kind)
            if n:
                shown = ", ".join(getattr(self, kind)[:10])
                more = f" (+{n - 10} more)" if n > 10 else ""
                out.append(f"{n} key(s) {label}: {shown}{more}")
        return out

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("examples_cap")
        return data


def _ordered(items: Iterable[ObjectInfo], side: str) -> Iterator[ObjectInfo]:
    last: str | None = None
    for item in items:
        if last is not None and item.key <= last:
            raise StepError(f"storage.parity: the {side} listing is not in key order ({last!r} then {item.key!r}); "
                            "cannot compare it by streaming")
        last = item.key
        yield item


def _parts(etag: str) -> int | None:
    head, sep, tail = etag.partition("-")
    return int(tail) if sep and tail.isdigit() else None


def compare(source: Iterable[ObjectInfo], target: Iterable[ObjectInfo], *, compare_etags: bool = True,
            examples_cap: int = 50, tick: Callable[[int], None] | None = None) -> ParityReport:
    """Merge-join two key-ordered listings; O(1) memory besides the capped examples."""
    report = ParityReport(examples_cap=examples_cap)
    src, dst = _ordered(source, "source"), _ordered(target, "target")
    a, b = next(src, None), next(dst, None)
    steps = 0
    while a is not None or b is not None:
        steps += 1
        if tick is not None and steps % 1000 == 0:
            tick(report.source_keys)
        if b is None or (a is not None and a.key < b.key):
            report.source_keys += 1
            report.add("missing_on_target", a.key)
            a = next(src, None)
        elif a is None or b.key < a.key:
            report.target_keys += 1
            report.add("missing_on_source", b.key)
            b = next(dst, None)
        else:
            report.source_keys += 1
            report.target_keys += 1
            if a.size != b.size:
                report.add("size_mismatch", a.key)
            elif compare_etags:
                pa, pb = _parts(a.etag), _parts(b.etag)
                if pa is None and pb is None:
                    if a.etag != b.etag:
                        report.add("etag_mismatch", a.key)
                    else:
                        report.matched += 1
                else:
                    report.compared_by_size += 1
                    report.matched += 1
                    if pa != pb:
                        report.add("part_count_differs", a.key)
            else:
                report.matched += 1
            a, b = next(src, None), next(dst, None)
    return report


def _store(ctx: Any, name: str) -> Any:
    target = ctx.target(name)
    if not registry.supports(target.platform, OBJECT_STORE):
        raise StepError(f"storage.parity: target {name!r} is {target.platform}; expected "
                        f"{' or '.join(registry.platforms_with(OBJECT_STORE))}")
    return registry.adapter(target, OBJECT_STORE)


def _required(ctx: Any, inputs: Any) -> tuple[list[str], list[list[str]]]:
    """Head every required key on both sides; (blocking lines, table rows)."""
    blocking, rows = [], []
    for key in inputs.required_keys:
        cells = []
        for side in (inputs.source, inputs.target):
            target = _store(ctx, side)
            try:
                info = target.head(key)
                cells.append(f"{info.size} bytes")
            except errors.NotFound:  # the one case with a plan: report it, loudly, as missing
                cells.append("MISSING")
                blocking.append(f"required key {key!r} is missing on {side} ({target.describe()})")
        rows.append([key, *cells])
    return blocking, rows


@register
class StorageParity(StepKind):
    name = "storage.parity"
    mutating = False
    idempotent = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")

        source: Annotated[str, TargetRef(capability=OBJECT_STORE)] = Field(description="aws-s3 or do-spaces target: the reference copy")
        target: Annotated[str, TargetRef(capability=OBJECT_STORE)] = Field(description="aws-s3 or do-spaces target that should hold the same objects")
        required_keys: list[str] = Field(default_factory=list, description="Keys (relative to the prefix) that must exist")
        compare_etags: bool = True
        fail_on_differences: bool = Field(True, description="Fail on keys missing on the target and mismatches")

    class Outputs(BaseModel):
        source_keys: int
        target_keys: int
        missing_on_target: int
        missing_on_source: int
        size_mismatch: int
        etag_mismatch: int
        compared_by_size: int

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        src, dst = _store(ctx, inputs.source), _store(ctx, inputs.target)
        blocking, rows = _required(ctx, inputs)
        table = [["required key", inputs.source, inputs.target], *rows] if rows else None
        return Plan(summary=f"compare {src.describe()} with {dst.describe()}"
                            + (f"; {len(inputs.required_keys)} required key(s)" if inputs.required_keys else ""),
                    blocking=blocking, table=table)

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        src, dst = _store(ctx, inputs.source), _store(ctx, inputs.target)
        missing_required, _ = _required(ctx, inputs)

        def tick(done: int) -> None:
            ctx.check_cancelled()
            ctx.progress(done, None, "comparing listings", unit="keys")

        report = compare(src.iter_objects(), dst.iter_objects(), compare_etags=inputs.compare_etags, tick=tick)
        problems = missing_required + (report.problems() if inputs.fail_on_differences else [])
        notes = []
        if report.compared_by_size:
            notes.append(f"{report.compared_by_size} pair(s) with multipart ETags compared by size and part count only")
        if report.count("missing_on_source"):
            notes.append(f"{report.count('missing_on_source')} key(s) only on the target")
        outputs = self.Outputs(source_keys=report.source_keys, target_keys=report.target_keys,
                               missing_on_target=report.count("missing_on_target"),
                               missing_on_source=report.count("missing_on_source"),
                               size_mismatch=report.count("size_mismatch"),
                               etag_mismatch=report.count("etag_mismatch"),
                               compared_by_size=report.compared_by_size)
        table = [["key", "problem"]]
        for kind in ("missing_on_target", "size_mismatch", "etag_mismatch", "missing_on_source", "part_count_differs"):
            table += [[key, kind.replace("_", " ")] for key in getattr(report, kind)]
        if problems:
            raise StepError("storage parity failed: " + "; ".join(problems))
        summary = (f"{report.source_keys} source / {report.target_keys} target keys; "
                   f"{report.matched} matched" + (f"; {'; '.join(notes)}" if notes else ""))
        return Result(summary=summary, outputs=outputs.model_dump(), table=table if len(table) > 1 else None,
                      details={"report": report.as_dict(), "notes": notes})
