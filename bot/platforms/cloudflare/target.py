"""Cloudflare target models: a DNS zone, and a load balancer in a zone.

    targets:
      edge: {platform: cloudflare, zone: example.com}
      lb:   {platform: cloudflare-lb, zone: example.com, load_balancer: api.example.com, account: 023e105f...}

`zone` is the zone's name or its 32-hex id; `load_balancer` the LB's hostname or id; `account`
the account id that owns the pools. `api_url` overrides the API endpoint (tests, a proxy); the
credentials come from the environment (`CLOUDFLARE_API_TOKEN`, or `CLOUDFLARE_EMAIL` plus
`CLOUDFLARE_API_KEY`), never from the runbook.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from bot.platforms.target_base import TargetBase


class CloudflareTarget(TargetBase):
    platform: Literal["cloudflare"] = "cloudflare"
    zone: str = Field(description="Zone name (example.com) or zone id")
    api_url: str | None = Field(None, description="Override the API endpoint (tests)")
    identity_fields: ClassVar[tuple[str, ...]] = ("zone",)


class CloudflareLbTarget(TargetBase):
    platform: Literal["cloudflare-lb"] = "cloudflare-lb"
    zone: str = Field(description="Zone name or id holding the load balancer")
    load_balancer: str = Field(description="Load balancer hostname (api.example.com) or id")
    account: str = Field(description="Account id owning the pools")
    api_url: str | None = Field(None, description="Override the API endpoint (tests)")
    identity_fields: ClassVar[tuple[str, ...]] = ("zone", "load_balancer")
