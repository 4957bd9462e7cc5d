"""What a platform can do, as protocols: the seam between step kinds and clouds.

A step kind never asks "is this Route 53?". It asks the registry for a capability of a target:

    from bot.platforms import registry
    zone = registry.adapter(ctx.target(inputs.zone), "Zone")      # Route 53, DigitalOcean, Cloudflare...
    sets = zone.read("api.example.com", "A")

and the loader refuses, at load time with file:line, a target whose platform lacks the capability a
field asks for (`TargetRef(capability="Zone")`). A new cloud implements some of these protocols in
one package under `bot/platforms/` and lists them in `registry.PLATFORMS`; no step module changes
(docs/platforms.md walks through Cloudflare).

The protocols are structural (`typing.Protocol`): an adapter does not inherit from them, it just has
the methods. Arguments called `waiter` are the step's context, used only for its clock (`waiter.clock
.now()`), `waiter.sleep`, `waiter.progress` and `waiter.log`: adapters wait without knowing the engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# The names the registry and `TargetRef(capability=...)` use.
SCALER, ZONE, ENV_SOURCE, ENV_SINK, MAINTENANCE = "Scaler", "Zone", "EnvSource", "EnvSink", "Maintenance"
OBJECT_STORE, TRAFFIC_SPLITTER, METRIC_SOURCE, HEALTH = "ObjectStore", "TrafficSplitter", "MetricSource", "Health"
DATABASE_ENDPOINT = "DatabaseEndpoint"


def poll_delay(timeout: float) -> int:
    """Seconds between polls: often enough for short test timeouts, at most every 15 s for real ones."""
    return max(1, min(15, int(timeout // 20) or 1))


@runtime_checkable
class Scaler(Protocol):
    """A service's instance count (`service.scale`, `app.maintenance` mode process).

        scaler = registry.adapter(target, "Scaler", process_type="web")
        scaler.count(); scaler.set(0); scaler.wait_healthy(ctx, 0, timeout=600)
    """

    label: str
    product: str  # "ECS": how people name the platform in a sentence
    min_count: int  # the platform's floor; below it `refuse_below` says why
    refuse_below: str

    def count(self) -> int: ...

    def set(self, count: int) -> None: ...

    def wait_healthy(self, waiter: Any, count: int, timeout: float) -> None: ...


@dataclass
class Applied:
    """What a record change did: when it was sent, how long until the provider had it."""

    submitted_at: float
    insync_seconds: float
    change_id: str | None = None


@runtime_checkable
class Zone(Protocol):
    """DNS records of one zone, in the provider's own representation ("record sets").

    A snapshot (`read`) is stored in a step's result as it is, so a rollback puts back exactly what
    was read. The step logic only goes through these methods, never into a record's keys.
    """

    provider: str  # stored in results ("route53")
    product: str  # said in sentences ("Route 53")
    weighted_supported: bool

    @property
    def ref(self) -> str | None: ...  # what `zone_for(..., zone_id=ref)` needs to skip the lookup

    @property
    def zone_name(self) -> str: ...

    def nameservers(self) -> list[str]: ...

    def read(self, name: str, rtype: str) -> list[dict[str, Any]]: ...

    def ttl(self, sets: list[dict[str, Any]]) -> int | None: ...

    def is_weighted(self, sets: list[dict[str, Any]]) -> bool: ...

    def describe(self, sets: list[dict[str, Any]], rtype: str) -> list[str]: ...

    def values(self, rtype: str, record_set: dict[str, Any]) -> list[str]: ...

    def is_alias(self, sets: list[dict[str, Any]]) -> bool: ...

    def edge_answered(self, sets: list[dict[str, Any]]) -> bool: ...  # proxied: the edge answers, not the record

    def same_records(self, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool: ...

    def set_id(self, record_set: dict[str, Any]) -> str | None: ...

    def weight(self, record_set: dict[str, Any]) -> int: ...

    def with_weight(self, record_set: dict[str, Any], weight: int) -> dict[str, Any]: ...

    def how(self, count: int) -> str: ...  # "one Route 53 change": said in rollback plans

    def fmt_ttl(self, ttl: Any) -> str: ...  # "5m"; Cloudflare's 1 is "auto"

    def with_ttl(self, record_set: dict[str, Any], ttl: int) -> dict[str, Any]: ...

    def retarget(self, before: list[dict[str, Any]], record: str, rtype: str, values: list[str],
                 ttl: int | None) -> list[dict[str, Any]]: ...

    def write(self, waiter: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, timeout: float,
              comment: str) -> Applied: ...

    def restore(self, waiter: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *,
                timeout: float, comment: str) -> Applied: ...


class AnsweredByNameServers:
    """Mixin for zones whose records the name servers answer as stored (no edge in front)."""

    @staticmethod
    def fmt_ttl(ttl: Any) -> str:
        from bot.platforms.dns import fmt_ttl

        return fmt_ttl(ttl)

    def same_records(self, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
        return a == b

    def edge_answered(self, sets: list[dict[str, Any]]) -> bool:
        return False


class UnweightedRecords:
    """Mixin for zones with one record per value and no weighted routing (DigitalOcean, Cloudflare)."""

    weighted_supported = False

    def is_weighted(self, sets: list[dict[str, Any]]) -> bool:
        return False

    def is_alias(self, sets: list[dict[str, Any]]) -> bool:
        return False

    def set_id(self, record_set: dict[str, Any]) -> str | None:
        return None

    def weight(self, record_set: dict[str, Any]) -> int:
        return 0

    def with_weight(self, record_set: dict[str, Any], weight: int) -> dict[str, Any]:
        raise ValueError(f"{getattr(self, 'product', 'this provider')} DNS has no weighted records")


def patch_each(current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, differs: Any, patch: Any,
               on_missing: Any) -> int:
    """Patch each record (matched by `id`) that `differs`; if one patch fails, put back the ones
    already made (newest first) and re-raise, so a provider without batches is never half-applied."""
    from bot.platforms import errors

    by_id = {r["id"]: r for r in current}
    missing = [w["id"] for w in wanted if w["id"] not in by_id]
    if missing:
        raise on_missing(missing)
    done: list[dict[str, Any]] = []
    try:
        for want in wanted:
            have = by_id[want["id"]]
            if not differs(have, want):
                continue
            patch(have, want)
            done.append(have)
    except errors.PlatformError:
        for have in reversed(done):
            patch(None, have)
        raise
    return len(done)


class RemovesAddedNames:
    """Mixin for env sinks whose rollback removes the names `env.set` added (values never stored)."""

    def plan_undo(self, undo: dict[str, Any], name: str) -> str:
        return f"remove {', '.join(undo.get('added', [])) or 'nothing'} from {name}"


@runtime_checkable
class EnvSource(Protocol):
    """A target's environment as `bot.platforms.envvalue.SourceEnv` (`env.diff`, `env.set` from)."""

    def read(self) -> Any: ...


@runtime_checkable
class EnvSink(Protocol):
    """A target's environment, written (`env.set` to) with what an exact rollback needs.

    `set` returns the undo record (JSON-able, no values); `undo`/`verify_undo` take it back.
    """

    how: str  # "a config-var update": said in the plan
    plain_only: bool  # True: a secret would land in plain text (ECS task definition environment)
    restores_overwritten: bool  # False: overwritten values cannot be put back (values are never stored)

    def set(self, values: Mapping[str, str], secret_names: set[str]) -> tuple[dict[str, Any], str]: ...

    def plan_undo(self, undo: dict[str, Any]) -> str: ...

    def undo(self, undo: dict[str, Any]) -> str: ...

    def verify_undo(self, undo: dict[str, Any]) -> tuple[bool, str] | None: ...


@runtime_checkable
class Maintenance(Protocol):
    """A platform's own maintenance switches: `modes` ⊆ ("platform", "env").

    `read(mode, env_var)` is a bool (platform) or a value fingerprint / None (env).
    """

    modes: tuple[str, ...]

    def read(self, mode: str, env_var: str) -> Any: ...

    def write(self, mode: str, env_var: str, on: bool, value: str) -> None: ...


@runtime_checkable
class ObjectStore(Protocol):
    """A bucket (and prefix): listing in key order and single-object heads (`storage.parity`)."""

    def describe(self) -> str: ...

    def iter_objects(self, *, page_size: int = 1000) -> Iterator[Any]: ...

    def head(self, key: str) -> Any: ...


@runtime_checkable
class TrafficSplitter(Protocol):
    """Weights that split traffic between pools/origins/record sets (`traffic.shift`).

    `snapshot()` is the whole steering state (weights, steering policy, default and fallback
    pools) as stored; `weights(snapshot)` reads {member: weight}; `with_weights(snapshot, w)` is the
    state to write; `write(waiter, current, wanted)` makes it so and returns the API calls made.
    """

    label: str

    def snapshot(self) -> dict[str, Any]: ...

    def members(self, snapshot: dict[str, Any]) -> list[str]: ...

    def weights(self, snapshot: dict[str, Any]) -> dict[str, float]: ...

    def with_weights(self, snapshot: dict[str, Any], weights: Mapping[str, float]) -> dict[str, Any]: ...

    def write(self, waiter: Any, current: dict[str, Any], wanted: dict[str, Any]) -> int: ...

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool: ...


@runtime_checkable
class MetricSource(Protocol):
    """Numbers for the watch, one query per tick: {signal name: value or None (no data)}."""

    def sample(self, start: float, end: float) -> dict[str, float | None]: ...


@runtime_checkable
class Health(Protocol):
    """A platform's own health verdict: (ok, one line saying why)."""

    def health(self) -> tuple[bool, str]: ...


@runtime_checkable
class DatabaseEndpoint(Protocol):
    """Where a target's database lives (its connection URL's host, engine, size); read-only."""

    def endpoint(self) -> dict[str, Any]: ...
