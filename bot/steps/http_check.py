"""`http.check`: GET a URL and expect a status (and optionally a body pattern).

    - id: new-side-healthy
      kind: http.check
      with:
        url: https://203.0.113.10/healthz
        host: api.example.com          # seed 002: health checks failed on exactly the Host header
        expect_status: 200
        body_matches: '"ok":\\s*true'
        timeout: 5s
      retries: {attempts: 10, backoff: 3s}

Read-only. A failed check raises `StepError` with the status (or "no answer") and a short,
redacted excerpt of the body, so the run stops at a clear reason; the engine's retries turn a
flaky start-up into "passed on try 4" instead of a false alarm.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot import secrets
from bot.platforms import http
from bot.runbook import patterns
from bot.runbook.model import Duration
from bot.runbook.patterns import check_pattern
from bot.steps.base import Plan, Result, StepError, StepKind, Verification, register


@register
class HttpCheck(StepKind):
    name = "http.check"
    mutating = False
    idempotent = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")

        url: str = Field(pattern=r"^https?://")
        host: str | None = Field(None, description="Host header to send")
        expect_status: int | list[int] = 200
        body_matches: str | None = Field(None, description="A regular expression the body must match "
                                                           "(at most 1000 characters; matched within 1 s)")
        timeout: Duration = 10.0
        verify_tls: bool = True

        @field_validator("body_matches")
        @classmethod
        def _regex(cls, value):
            return check_pattern(value) if value is not None else None

    class Outputs(BaseModel):
        status: int
        elapsed_ms: float

    @staticmethod
    def _expected(inputs) -> list[int]:
        return inputs.expect_status if isinstance(inputs.expect_status, list) else [inputs.expect_status]

    def plan(self, ctx, inputs) -> Plan:
        host = f" (Host: {inputs.host})" if inputs.host else ""
        body = f" and a body matching /{inputs.body_matches}/" if inputs.body_matches else ""
        expected = " or ".join(map(str, self._expected(inputs)))
        return Plan(summary=f"GET {secrets.redact(inputs.url)}{host}, expect {expected}{body}")

    def apply(self, ctx, inputs, plan) -> Result:
        timeout = inputs.timeout
        remaining = ctx.remaining()
        if remaining is not None:
            timeout = max(0.5, min(timeout, remaining))
        reply = http.get(inputs.url, host=inputs.host, timeout=timeout, verify_tls=inputs.verify_tls)
        where = secrets.redact(inputs.url)
        if not reply.answered:
            raise StepError(f"{where}: {reply.error}")
        if reply.status not in self._expected(inputs):
            excerpt = secrets.redact(reply.body[:200].strip())
            raise StepError(f"{where}: HTTP {reply.status}, expected {self._expected(inputs)}"
                            + (f"; body: {excerpt!r}" if excerpt else ""))
        try:
            matched = not inputs.body_matches or patterns.search(inputs.body_matches, reply.body)
        except patterns.PatternTimeout as exc:
            raise StepError(f"{where}: body_matches {exc}") from None
        if not matched:
            raise StepError(f"{where}: HTTP {reply.status} but the body does not match /{inputs.body_matches}/")
        return Result(summary=f"HTTP {reply.status} in {reply.elapsed_ms:.0f} ms",
                      outputs={"status": reply.status, "elapsed_ms": round(reply.elapsed_ms, 1)})

    def verify(self, ctx, inputs, result) -> Verification | None:
        return None
