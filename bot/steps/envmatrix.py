"""The environment matrix: one row per variable, one column per source, values never shown.

    from bot.steps import envmatrix
    envs = {"old": envmatrix.read_source(old_target), "new": envmatrix.read_source(new_target)}
    m = envmatrix.build(envs, ignore=["PORT"], expect_differ=["DATABASE_URL"])
    m.blocking()      # ['WORKERS: missing on new; the command `${WORKERS:-1}` would quietly use 1']
    m.table()         # header row, then rows, problems first; cells are keyed fingerprints

States of a row:
- `same`: present everywhere with equal fingerprints;
- `differs`: present everywhere, values differ (blocking unless listed in `expect_differ`, when
  it reads `differs (expected)`); a variable in `expect_differ` that is the *same* everywhere is
  blocking too (a `DATABASE_URL` still pointing at the old database is the bug it is there for);
- `missing`: absent on a non-reference source (blocking unless in `allow_missing`);
- `extra`: present on later sources but absent on the reference (the first, old) one: shown, not
  blocking, since the new platform may well need variables the old one did not;
- `secret-unknown`: present everywhere but at least one value cannot be read (an App Platform
  SECRET, a Fly secret): compared by presence only, and the row says so.

`ignore` globs (fnmatch) drop rows before any judgement. Commands the sources expose (ECS
`entryPoint`+`command`, App Platform `run_command`, Fly `init.cmd`) are scanned for shell defaults
(`${VAR:-x}`, `${VAR-x}`, `${VAR:=x}`): the seed's trap, where `WORKERS` did not make the jump and
`${WORKERS:-1}` took over without an error anywhere. Such a variable absent on the new side gets
the default spelled out in its blocking line.

The module is pure apart from `read_source`, which asks `bot.platforms` for a source's environment.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from bot.platforms.envvalue import SourceEnv

_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-=])([^}]*)\}")
MISSING_CELL = "—"
HIDDEN_CELL = "present (value hidden)"
BLOCKING, WARNING, OK = 0, 1, 2


def read_source(target: Any) -> SourceEnv:
    """The environment of one target, through its platform's `EnvSource` (imported on first use)."""
    from bot.platforms import registry
    from bot.platforms.capabilities import ENV_SOURCE

    platform = getattr(target, "platform", "")
    if not registry.supports(platform, ENV_SOURCE):
        raise ValueError(f"platform {platform!r} has no environment to compare "
                         f"({', '.join(registry.platforms_with(ENV_SOURCE))})")
    return registry.adapter(target, ENV_SOURCE).read()


def command_defaults(commands: list[str]) -> dict[str, str]:
    """{VAR: "${VAR:-1}"} for every shell default expansion in the commands."""
    found: dict[str, str] = {}
    for command in commands:
        for match in _DEFAULT.finditer(command):
            found.setdefault(match.group(1), match.group(0))
    return found


@dataclass
class Row:
    name: str
    state: str
    cells: list[str]
    level: int  # BLOCKING, WARNING, OK
    note: str = ""
    missing_on: list[str] = field(default_factory=list)
    default: str | None = None  # the command's `${NAME:-x}` when there is one

    def as_dict(self, sources: list[str]) -> dict[str, str]:
        row = {"variable": self.name, "state": self.state}
        row.update(dict(zip(sources, self.cells, strict=True)))
        row["note"] = self.note
        return row


@dataclass
class Matrix:
    sources: list[str]
    rows: list[Row]
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[Row]:
        return [r for r in self.rows if r.level == BLOCKING]

    def blocking(self) -> list[str]:
        return [f"{r.name}: {r.note}" for r in self.problems()]

    def warnings(self) -> list[str]:
        return [f"{r.name}: {r.note}" for r in self.rows if r.level == WARNING] + list(self.notes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def header(self) -> list[str]:
        return ["variable", "state", *self.sources, "note"]

    def table(self) -> list[list[str]]:
        """Header then rows: blocking first, then warnings, then the rest; by name within each."""
        return [self.header()] + [[r.name, r.state, *r.cells, r.note] for r in self.rows]

    def csv_rows(self) -> list[dict[str, str]]:
        return [r.as_dict(self.sources) for r in self.rows]

    def csv(self) -> str:
        """The full matrix as CSV text (what Slack attaches when the table is long)."""
        return to_csv(self.header(), self.csv_rows())

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        problems = len(self.problems())
        head = f"{len(self.rows)} variables across {', '.join(self.sources)}: {counts or 'none'}"
        if self.ignored:
            head += f"; {len(self.ignored)} ignored"
        return head + (f"; {problems} problem(s)" if problems else "; no problems")


def to_csv(columns: list[str], rows: list[dict[str, str]]) -> str:
    """CSV of stored rows (`Result.details["columns"]`/`["rows"]` of env.diff): fingerprints only."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def build(envs: dict[str, SourceEnv], *, ignore: list[str] | None = None,
          expect_differ: list[str] | None = None, allow_missing: list[str] | None = None) -> Matrix:
    """Compare the sources (the first is the reference, the old platform)."""
    if len(envs) < 2:
        raise ValueError("an environment matrix needs at least two sources")
    ignore, expect_differ, allow_missing = ignore or [], expect_differ or [], allow_missing or []
    sources = list(envs)
    reference, others = sources[0], sources[1:]
    defaults = command_defaults([c for e in envs.values() for c in e.commands])
    names = sorted(set().union(*(e.names() for e in envs.values())))
    matrix = Matrix(sources=sources, rows=[])
    for source, env in envs.items():
        matrix.notes.extend(f"{source}: {note}" for note in env.notes)

    for name in names:
        if _matches(name, ignore):
            matrix.ignored.append(name)
            continue
        values = [envs[s].values.get(name) for s in sources]
        cells = [MISSING_CELL if v is None else (v.fingerprint() if v.known else HIDDEN_CELL) for v in values]
        missing_on = [s for s, v in zip(sources, values, strict=True) if v is None]
        default = defaults.get(name)
        row = Row(name, "same", cells, OK, missing_on=missing_on, default=default)
        if missing_on:
            missing_new = [s for s in missing_on if s != reference]
            if not missing_new:
                row.state, row.level = "extra", WARNING
                row.note = f"not set on {reference}; only on {', '.join(s for s in others if s not in missing_on)}"
            else:
                row.state = "missing"
                row.note = f"missing on {', '.join(missing_on)}"
                if default:
                    row.note += f"; the command's `{default}` would quietly use {_default_value(default)!r}"
                if _matches(name, allow_missing):
                    row.level, row.note = WARNING, row.note + " (allowed)"
                else:
                    row.level = BLOCKING
        else:
            hidden = [s for s, v in zip(sources, values, strict=True) if v is not None and not v.known]
            known_fps = {v.fingerprint() for v in values if v is not None and v.known}
            expected = _matches(name, expect_differ)
            if hidden:
                row.state, row.level = "secret-unknown", WARNING
                row.note = f"value not readable on {', '.join(hidden)}: compared by presence only"
                if len(known_fps) > 1:
                    row.state = "differs" if not expected else "differs (expected)"
                    row.level = WARNING if expected else BLOCKING
                    row.note = "readable values differ; " + row.note
            elif len(known_fps) > 1:
                if expected:
                    row.state, row.level, row.note = "differs (expected)", OK, "expected to differ"
                else:
                    row.state, row.level = "differs", BLOCKING
                    row.note = f"differs between {', '.join(sources)}"
            elif expected:
                row.level, row.note = BLOCKING, "expected to differ, but is the same everywhere"
            if default and row.level == OK:
                row.note = f"command uses `{default}`"
        matrix.rows.append(row)

    for name, default in sorted(defaults.items()):
        if name not in names and not _matches(name, ignore):
            matrix.notes.append(f"{name} is set nowhere: the command's `{default}` is used on every platform")
    matrix.rows.sort(key=lambda r: (r.level, r.name))
    return matrix


def _default_value(expansion: str) -> str:
    match = _DEFAULT.fullmatch(expansion)
    return match.group(3) if match else ""
