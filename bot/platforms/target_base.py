"""The base of every target model (a runbook's `targets:` entry), shared by bot.runbook and platform packages.

A platform package declares its own target model here-derived, so adding a cloud touches no
runbook module:

    class CloudflareTarget(TargetBase):
        platform: Literal["cloudflare"] = "cloudflare"
        zone: str
        identity_fields: ClassVar[tuple[str, ...]] = ("zone",)
"""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class TargetBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: str
    # Fields that identify the environment (the rest, like an endpoint override, do not).
    identity_fields: ClassVar[tuple[str, ...]] = ()

    def lock_key(self) -> str:
        fields = self.identity_fields or tuple(f for f in type(self).model_fields if f != "platform")
        ident = {f: getattr(self, f) for f in fields}
        return f"{self.platform}:" + json.dumps(ident, sort_keys=True, default=str)


class AwsTargetMixin(BaseModel):
    region: str = "us-east-1"
    role_arn: str | None = Field(None, description="Role to assume for this target (optional)")
    endpoint_url: str | None = Field(None, description="Override the AWS endpoint (tests, LocalStack)")
    profile: str | None = None
