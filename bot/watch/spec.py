"""The watch spec: what a runbook's `watch.start` step says, validated.

    - id: watch
      kind: watch.start
      with:
        every: 10m                       # default 10m
        for: 24h                         # default 24h
        delay: 2m                        # default 2m: metrics arrive late; the window ends this long ago
        on_call: ["@platform-oncall"]
        alb: new-alb                     # an `aws-alb` target: edge 504/5xx, RequestCount
        log_group: /ecs/api              # AWS/Logs IncomingLogEvents (region/endpoint from `aws` or `alb`)
        baseline: {alb: old-alb}         # history before the cutover comes from the old platform
        signals:
          - log_volume                   # a bare name inherits the sources above and default thresholds
          - {name: edge_504_rate, over: 1%}
          - {name: throughput_floor, floor: 200, under: 50%}
          - {name: probe, probe: {url: "https://203.0.113.7/healthz", host: api.example.com}, failures: 3}
          - {name: caller_log, caller_log: {log_groups: [/ecs/web], pattern: " 504 "}, over: 10}
          - {name: replication_lag, database: "env:NEW_DATABASE_URL", lag_mib: 1024, failures: 3}

Durations are `30s`, `10m`, `24h`, `1h30m` or seconds as a number. Percentages are `"1%"` or a
number meaning percent. Thresholds per signal (defaults in brackets):

- `edge_504_rate` / `edge_5xx_rate`: `over` [1%] breaches, `warn_over` [half of `over`] warns.
- `log_volume`: `under` [50%] of the baseline breaches, `warn_under` [75%] warns; `floor` (lines per
  interval, absolute) breaches too when set.
- `throughput_floor`: `floor` (absolute per interval) and `under` [50%] of the baseline; either breaches.
- `probe`: `failures` [3] failed probes in a row breach; one failure warns; `attempts` [3] per tick.
- `caller_log`: `over` [0] 504s per interval breach; `warn_over` [0] warns.
- `replication_lag`: the runbook-bot replication slots on `database` (after db.replicate's cutover, the
  reverse slot on the new primary): a slot inactive `failures` [3] ticks in a row, one holding more than
  `lag_mib` [1024] MiB of WAL, or lag growing `failures` ticks in a row breaches; the first such tick warns.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bot.runbook.model import bounded_seconds

SIGNAL_NAMES = ("log_volume", "edge_504_rate", "edge_5xx_rate", "throughput_floor", "probe", "caller_log",
                "pool_health", "replication_lag")

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from `"10m"`, `"24h"`, `"1h30m"`, `"45s"`, `"2d"` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()[:64]
        if text.replace(".", "", 1).isdigit():  # numbers rendered as text by a template
            return bounded_seconds(float(text), value) if float(text) > 0 else parse_duration(float(text))
        match = _DURATION.match(text)
        if not text or match is None or not any(match.groups()):
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 10m, 24h, 1h30m)")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {value!r}")
    return bounded_seconds(seconds, value)


def format_duration(seconds: float) -> str:
    """`600 -> "10m"`, `5400 -> "1h30m"`, `45 -> "45s"`."""
    seconds = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parse_percent(value: Any) -> float:
    """Percent from `"1%"`, `"0.5 %"` or a number (already in percent)."""
    if isinstance(value, bool):
        raise ValueError(f"not a percentage: {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().rstrip("%").strip()
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"not a percentage: {value!r} (use e.g. 1%)") from None
    if number < 0:
        raise ValueError(f"a percentage cannot be negative: {value!r}")
    return number


def parse_delay(value: Any) -> float:
    """Like `parse_duration`, but zero is allowed (`0`, `"0s"`)."""
    if value in (0, 0.0, "0", "0s"):
        return 0.0
    return parse_duration(value)


# The x- markers tell the JSON Schema builder (bot.runbook.schema) that people write these as text.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(json_schema_extra={"x-duration": True})]
Delay = Annotated[float, BeforeValidator(parse_delay), Field(json_schema_extra={"x-duration": True})]
Percent = Annotated[float, BeforeValidator(parse_percent), Field(json_schema_extra={"x-percent": True})]


class ProbeSource(BaseModel):
    """Where the synthetic caller sends its GET: a URL, optionally with a Host header (an IP or
    the edge's address), or the name of an `http` target that holds both."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    host: str | None = None
    target: str | None = None
    timeout: Duration = 10.0
    ok_status: tuple[int, int] = (200, 399)

    @model_validator(mode="after")
    def _one_source(self) -> ProbeSource:
        if not self.url and not self.target:
            raise ValueError("probe needs `url` (with optional `host`) or `target` (an http target)")
        return self


class CallerLogSource(BaseModel):
    """The calling service's log groups and what its 504 lines look like (a regex)."""

    model_config = ConfigDict(extra="forbid")

    log_groups: list[str] = Field(min_length=1, max_length=50)
    pattern: str = r"\b504\b"
    aws: str | None = Field(None, description="AWS target for region/credentials (default: the spec's `aws`/`alb`)")


class BaselineSource(BaseModel):
    """Where the history before the cutover is read (the old platform); default: the signal's own source."""

    model_config = ConfigDict(extra="forbid")

    alb: str | None = None
    log_group: str | None = None
    aws: str | None = None


class Sources(BaseModel):
    """Source fields shared by the spec (defaults) and each signal (overrides)."""

    model_config = ConfigDict(extra="forbid")

    alb: str | None = Field(None, description="name of an `aws-alb` target")
    log_group: str | None = Field(None, description="CloudWatch log group of the service")
    aws: str | None = Field(None, description="AWS target whose region/endpoint/role reads `log_group`")
    app: str | None = Field(None, description="name of a `do-app` target (log volume from its archives)")
    do_lb: str | None = Field(None, description="DigitalOcean load balancer id (frontend response metrics)")
    log_file: str | None = Field(None, description="a local log file whose new lines are counted")
    edge: str | None = Field(None, description="name of a target with edge metrics (a cloudflare zone: GraphQL analytics)")
    probe: ProbeSource | str | None = None
    caller_log: CallerLogSource | None = None
    database: str | dict[str, Any] | None = Field(
        None, description="a PostgreSQL endpoint (`env:NAME`, a URL, `{target: ...}`) whose runbook-bot "
                          "replication slots `replication_lag` watches")
    baseline: BaselineSource | None = None


class SignalSpec(Sources):
    """One signal with its sources and thresholds (unset fields inherit the spec's sources)."""

    name: Literal["log_volume", "edge_504_rate", "edge_5xx_rate", "throughput_floor", "probe", "caller_log",
                  "pool_health", "replication_lag"]
    label: str | None = None
    over: Percent | None = None
    warn_over: Percent | None = None
    under: Percent | None = None
    warn_under: Percent | None = None
    floor: float | None = Field(None, ge=0)
    failures: int = Field(3, ge=1)
    attempts: int = Field(3, ge=1, le=20)
    lag_mib: float = Field(1024.0, gt=0, description="replication_lag: WAL a slot may hold back before a breach")

    @property
    def key(self) -> str:
        return self.label or self.name


class WatchSpec(Sources):
    """The whole `with:` block of `watch.start`."""

    every: Duration = 600.0
    for_: Duration = Field(86400.0, alias="for")
    # CloudWatch and Logs publish a minute or two late: reading up to "now" would see a half-filled
    # last interval and report a drop that is not there. Each tick reports [now-delay-every, now-delay).
    delay: Delay = 120.0
    on_call: list[str] = Field(default_factory=list)
    signals: list[SignalSpec] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _expand_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("signals"), list):
            expanded = []
            for item in data["signals"]:
                if isinstance(item, str):
                    if item not in SIGNAL_NAMES:
                        raise ValueError(f"unknown signal {item!r}; known: {', '.join(SIGNAL_NAMES)}")
                    item = {"name": item}
                expanded.append(item)
            data = {**data, "signals": expanded}
        return data

    @model_validator(mode="after")
    def _check(self) -> WatchSpec:
        if self.every > self.for_:
            raise ValueError(f"every ({format_duration(self.every)}) is longer than for ({format_duration(self.for_)})")
        keys = [s.key for s in self.signals]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"signals {dupes} appear twice: give each a distinct `label`")
        return self

    def resolved(self) -> list[SignalSpec]:
        """Each signal with the spec-level sources filled in where the signal left them unset."""
        inherited = {name: getattr(self, name) for name in Sources.model_fields}
        out = []
        for signal in self.signals:
            updates = {k: v for k, v in inherited.items() if getattr(signal, k) is None and v is not None}
            out.append(signal.model_copy(update=updates))
        return out

    def dump(self) -> dict[str, Any]:
        """JSON for the store (by alias, so `for` round-trips)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
