"""The one place that maps a target's `platform:` to the adapters that implement its capabilities.

    from bot.platforms import registry
    registry.adapter(target, "Scaler", process_type="web")   # an EcsScaler, AppScaler, HerokuScaler, ...
    registry.platforms_with("Zone")                           # ('aws-route53', 'do-domain', 'cloudflare')
    registry.supports("heroku", "Zone")                       # False

Adapters are named by import path and imported on first use, so a runbook that never touches
Cloudflare never imports its SDK. Adding a cloud: write `bot/platforms/<cloud>/` (a target model
subclassing `bot.platforms.target_base.TargetBase`, and adapter classes taking the target as first
argument), then add one entry to `PLATFORMS`. Step kinds, the loader and the schema pick it up.
"""

from __future__ import annotations

import importlib
from typing import Any

from bot.platforms import capabilities as cap
from bot.platforms import errors

# platform -> {"target": model path (only for platforms whose model lives in their package),
#              capability name: adapter class path}
PLATFORMS: dict[str, dict[str, str]] = {
    "aws-ecs": {
        cap.SCALER: "bot.platforms.aws.ecs_scaling:EcsScaler",
        cap.ENV_SOURCE: "bot.platforms.aws.ecs:EcsEnv",
        cap.ENV_SINK: "bot.platforms.aws.ecs:EcsEnv",
    },
    "aws-route53": {
        cap.ZONE: "bot.platforms.aws.route53_zone:Route53Zone",
        cap.TRAFFIC_SPLITTER: "bot.platforms.aws.route53_zone:Route53Weights",
    },
    "aws-s3": {cap.OBJECT_STORE: "bot.platforms.aws.s3:S3Store"},
    "aws-alb": {},  # watch signals only (bot.watch reads CloudWatch through bot.platforms.aws.cloudwatch)
    "do-app": {
        cap.SCALER: "bot.platforms.digitalocean.app_scaling:AppScaler",
        cap.ENV_SOURCE: "bot.platforms.digitalocean.apps:AppEnv",
        cap.ENV_SINK: "bot.platforms.digitalocean.apps:AppEnv",
        cap.MAINTENANCE: "bot.platforms.digitalocean.app_flag:AppFlagMaintenance",
    },
    "do-domain": {cap.ZONE: "bot.platforms.digitalocean.domain_zone:DigitalOceanZone"},
    "do-spaces": {cap.OBJECT_STORE: "bot.platforms.aws.s3:S3Store"},  # Spaces speaks the S3 API
    "do-database": {},
    "heroku": {
        cap.SCALER: "bot.platforms.heroku.formation:HerokuScaler",
        cap.ENV_SOURCE: "bot.platforms.heroku.config_vars:HerokuEnv",
        cap.ENV_SINK: "bot.platforms.heroku.config_vars:HerokuEnv",
        cap.MAINTENANCE: "bot.platforms.heroku.maintenance:HerokuMaintenance",
    },
    "aws-beanstalk": {
        "target": "bot.platforms.aws.beanstalk:BeanstalkTarget",
        cap.ENV_SOURCE: "bot.platforms.aws.beanstalk:BeanstalkEnv",
        cap.ENV_SINK: "bot.platforms.aws.beanstalk:BeanstalkEnv",
        cap.SCALER: "bot.platforms.aws.beanstalk:BeanstalkScaler",
        cap.HEALTH: "bot.platforms.aws.beanstalk:BeanstalkHealth",
    },
    "fly": {cap.ENV_SOURCE: "bot.platforms.fly:FlyEnv"},
    "file": {cap.ENV_SOURCE: "bot.platforms.envfile_source:FileEnv"},
    "postgres": {},
    "http": {},
    "cloudflare": {
        "target": "bot.platforms.cloudflare.target:CloudflareTarget",
        cap.ZONE: "bot.platforms.cloudflare.zone:CloudflareZone",
        cap.METRIC_SOURCE: "bot.platforms.cloudflare.analytics:EdgeAnalytics",
    },
    "cloudflare-lb": {
        "target": "bot.platforms.cloudflare.target:CloudflareLbTarget",
        cap.TRAFFIC_SPLITTER: "bot.platforms.cloudflare.lb:LoadBalancerWeights",
        cap.METRIC_SOURCE: "bot.platforms.cloudflare.analytics:EdgeAnalytics",
        cap.HEALTH: "bot.platforms.cloudflare.lb:PoolHealth",
    },
}


class MissingCapability(errors.PlatformError):
    """A target's platform lacks the capability a step asked for (normally caught at load time)."""

    def __init__(self, platform: str, capability: str) -> None:
        have = ", ".join(platforms_with(capability)) or "none"
        super().__init__(platform, f"registry.{capability}", platform,
                         f"a {platform} target has no {capability}; platforms with one: {have}")


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def capabilities_of(platform: str) -> tuple[str, ...]:
    return tuple(k for k in PLATFORMS.get(platform, {}) if k != "target")


def supports(platform: str, *capabilities: str) -> bool:
    """True when the platform has at least one of the capabilities."""
    have = PLATFORMS.get(platform, {})
    return any(c in have for c in capabilities)


def platforms_with(*capabilities: str) -> tuple[str, ...]:
    """Platforms having at least one of the capabilities, in registry order."""
    return tuple(p for p in PLATFORMS if supports(p, *capabilities))


def adapter_class(platform: str, capability: str) -> Any:
    path = PLATFORMS.get(platform, {}).get(capability)
    if path is None:
        raise MissingCapability(platform, capability)
    return _load(path)


def adapter(target: Any, capability: str, /, **kwargs: Any) -> Any:
    """The adapter implementing `capability` for this validated target model."""
    return adapter_class(getattr(target, "platform", ""), capability)(target, **kwargs)


def target_models() -> dict[str, Any]:
    """Target models that live in their platform's package (the rest are in bot.runbook.targets)."""
    return {p: _load(entry["target"]) for p, entry in PLATFORMS.items() if "target" in entry}
