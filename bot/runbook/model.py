"""The runbook model (pydantic v2): what a runbook file may say, and nothing else.

    name: aws-ecs-to-do-app
    description: Move the api service from ECS Fargate to App Platform
    env: [DIGITALOCEAN_TOKEN]          # the only environment variables templates may read
    params:
      env: {type: choice, choices: [staging, production], default: staging}
    targets:
      old: {platform: aws-ecs, region: us-east-1, cluster: "{{ params.env }}", service: api}
    approvals:
      default: {approvers: ["@platform-oncall"], min: 1, allow_self: false, expires_after: 2h}
    steps:
      - id: switch-dns
        kind: dns.switch
        with: {record: api.example.com, to: new}
        approval: {min: 2, confirm_text: "{{ params.env }}"}
        timeout: 15m
        retries: {attempts: 3, backoff: 5s}
        on_failure: rollback
    rollback: []                       # steps run after the automatic reverse rollback
    watch: {every: 10m, for: 24h, signals: [log_volume, probe]}

Every mapping forbids unknown keys. `with:` is checked against the step kind's own `Inputs` model
by the loader (after rendering templates with probe values), not here: this model only knows the
shape that all runbooks share.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


_SECONDS = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
# No runbook waits, times out or watches for longer than this; a typo like `99999999d` would
# otherwise validate and park a run (and a worker) for ever.
MAX_DURATION = 30 * 86400.0


def bounded_seconds(seconds: float, value: Any) -> float:
    """`seconds` if it is finite and at most `MAX_DURATION`, else a ValueError quoting `value`."""
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than the maximum duration of 30 days")
    return seconds


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"10m"`, `"1h30m"`, `"2d"`; at most 30 days, never nan or inf.

    >>> parse_duration("1h30m")
    5400.0
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 10m, 1h30m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return bounded_seconds(float(value), value)
    if isinstance(value, str) and len(value) <= 64:
        if _SECONDS.match(value):  # a template renders numbers as text: "{{ params.secs }}" -> "300"
            return bounded_seconds(float(value), value)
        match = _DURATION.match(value)
        if match and any(match.groups()):
            d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
            return bounded_seconds(d * 86400 + h * 3600 + m * 60 + s, value)
    raise ValueError(f"{value!r} is not a duration (use seconds, or text like 30s, 10m, 1h30m, 2d)")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(json_schema_extra={"x-duration": True})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Param(Strict):
    """A typed runbook parameter; values arrive as text (`k=v`) and are coerced by `coerce`."""

    type: Literal["string", "int", "bool", "choice"] = "string"
    description: str | None = None
    default: str | int | bool | None = None
    required: bool | None = Field(None, description="Defaults to true when there is no default")
    choices: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter needs `choices`")
        if self.type != "choice" and self.choices is not None:
            raise ValueError("`choices` only goes with type: choice")
        if self.default is not None:
            self.coerce(self.default)  # raises ValueError naming the problem
        return self

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None

    def coerce(self, raw: Any) -> Any:
        """The typed value of `raw`, or ValueError saying what is expected."""
        if self.type == "int":
            if isinstance(raw, bool):
                raise ValueError(f"expected an integer, got {raw!r}")
            try:
                return int(str(raw).strip())
            except ValueError:
                raise ValueError(f"expected an integer, got {raw!r}") from None
        if self.type == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "yes", "on", "1"):
                return True
            if text in ("false", "no", "off", "0"):
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        text = str(raw)
        if self.type == "choice" and text not in (self.choices or []):
            raise ValueError(f"expected one of {', '.join(self.choices or [])}; got {text!r}")
        return text


class ApprovalPolicy(Strict):
    """Who may approve, how many, and how. Approvers: Slack user ids, `@group` handles, emails, `*`."""

    approvers: list[str] = Field(default_factory=list)
    min: int = Field(1, ge=1, le=20)
    allow_self: bool = False
    confirm_text: str | None = Field(None, description="Text the approver must type, e.g. production")
    expires_after: Duration | None = Field(None, description="An approval request older than this is refused")
    remind_every: Duration | None = Field(None, description="Remind the approvers this often while it waits")
    escalate_after: Duration | None = Field(None, description="Then also ask `escalate_to`, once, this long after")
    escalate_to: list[str] = Field(default_factory=list, description="The second group: ids, @groups, emails")
    notify: Literal["mention", "dm"] = Field("mention", description="Remind by a mention in the thread, or by DM")

    @model_validator(mode="after")
    def _escalation(self) -> ApprovalPolicy:
        if self.escalate_after is not None and not self.escalate_to:
            raise ValueError("escalate_after needs escalate_to (whom to escalate to)")
        return self

    @model_validator(mode="after")
    def _enough_approvers(self) -> ApprovalPolicy:
        if self.approvers and "*" not in self.approvers and len(self.approvers) < self.min and not any(
            a.startswith("@") for a in self.approvers
        ):
            raise ValueError(f"min is {self.min} but only {len(self.approvers)} approver(s) are listed")
        return self


class StepApproval(Strict):
    """A step's approval: a named policy (`use`), with any field overridden."""

    use: str | None = Field(None, description="Name of a policy under `approvals` (default: `default`)")
    approvers: list[str] | None = None
    min: int | None = Field(None, ge=1, le=20)
    allow_self: bool | None = None
    confirm_text: str | None = None
    expires_after: Duration | None = None
    remind_every: Duration | None = None
    escalate_after: Duration | None = None
    escalate_to: list[str] | None = None
    notify: Literal["mention", "dm"] | None = None


class Retries(Strict):
    attempts: int = Field(1, ge=1, le=20, description="Total tries, the first included")
    backoff: Duration = Field(2.0, description="Wait before the second try")
    factor: float = Field(2.0, ge=1.0, le=10.0)
    max_backoff: Duration = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        return float(min(self.max_backoff, self.backoff * self.factor ** max(0, attempt - 1)))


def _retries_shorthand(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"attempts": value}
    return value


class RollbackSpec(Strict):
    """An explicit undo for a step, used instead of the kind's own rollback."""

    kind: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    approval: StepApproval | str | Literal[False] | None = None
    timeout: Duration | None = None


class Step(Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: str
    description: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    approval: StepApproval | str | Literal[False] | None = Field(
        None, description="A policy name, overrides of the default policy, or false (no approval)"
    )
    timeout: Duration | None = None
    retries: Annotated[Retries, BeforeValidator(_retries_shorthand)] = Field(default_factory=Retries)
    on_failure: Literal["abort", "continue", "rollback"] = "abort"
    rollback: RollbackSpec | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from difflib import get_close_matches

        from bot.steps.base import kinds

        known = kinds()
        if kind not in known:
            close = get_close_matches(kind, list(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known kinds: {', '.join(sorted(known))}"
            raise ValueError(f"unknown step kind {kind!r}{hint}")
        return kind


class EnvVar(Strict):
    """An environment variable templates may read; its value is a secret unless `secret: false`."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    secret: bool = True


def _env_entry(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class Runbook(Strict):
    name: str = Field(pattern=ID_PATTERN)
    description: str = ""
    env: list[Annotated[EnvVar, BeforeValidator(_env_entry)]] = Field(
        default_factory=list,
        description="Environment variables templates may read: NAME (a secret), or {name: NAME, secret: false}",
    )
    params: dict[str, Param] = Field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    approvals: dict[str, ApprovalPolicy] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    rollback: list[Step] = Field(default_factory=list)
    rollback_approval: Literal["once", "per_step"] = Field(
        "once", description="once: one approval (meeting the strictest policy of the undo steps) approves the "
                            "whole reverse plan; per_step: each undo step is approved on its own")
    watch: dict[str, Any] | None = None

    def step(self, step_id: str) -> Step:
        for step in (*self.steps, *self.rollback):
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def policy_for(self, step: Step | RollbackSpec, *, mutating: bool) -> ApprovalPolicy | None:
        """The effective approval policy of a step, or None when it runs without approval."""
        spec = step.approval
        if spec is False:
            return None
        if spec is None and not mutating:
            return None
        if isinstance(spec, str):
            return self.approvals[spec]
        base_name = spec.use if isinstance(spec, StepApproval) and spec.use else "default"
        base = self.approvals.get(base_name, ApprovalPolicy())
        if isinstance(spec, StepApproval):
            overrides = {k: v for k, v in spec.model_dump(exclude={"use"}).items() if v is not None}
            return base.model_copy(update=overrides)
        return base
