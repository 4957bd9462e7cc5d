"""The `TrafficSplitter` capability of a Cloudflare load balancer: pool weights (or origin weights).

    lb = LoadBalancerWeights(target)                  # or registry.adapter(target, "TrafficSplitter")
    snap = lb.snapshot()                              # LB steering state (+ the pool's origins, origin mode)
    lb.weights(snap)                                  # {"heroku": 1.0, "ecs": 0.0}
    lb.write(ctx, snap, lb.with_weights(snap, {"heroku": 0.9, "ecs": 0.1}))   # API calls made

Pool mode (default): traffic splits between pools by `random_steering.pool_weights`, which
Cloudflare uses only with `steering_policy: random` (or `least_outstanding_requests`), so a shift
sets the policy to `random` and puts every shifted pool in `default_pools`. The snapshot holds the
exact steering policy, `random_steering`, `default_pools` and `fallback_pool`, so a rollback puts
all of them back as they were. Origin mode (`pool:` given): the weights of origins inside one pool
(`origins[].weight`, 0-1 in steps of 0.01).

Members are named by pool (or origin) name; ids are what the API gets.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bot.platforms import cloudflare as cf
from bot.platforms import errors

STEERING_KEYS = ("steering_policy", "random_steering", "default_pools", "fallback_pool")
WEIGHTED_POLICIES = ("random", "least_outstanding_requests")


class LoadBalancerWeights:
    max_weight = 1.0

    def __init__(self, target: Any, pool: str | None = None, **_: Any) -> None:
        self.target = target
        self.pool = pool
        self.calls = 0  # API calls made through this adapter (the benchmark reports them)
        self._zone_id: str | None = None
        self._lb_id: str | None = None
        self.label = f"Cloudflare load balancer {target.load_balancer}" + (f" pool {pool}" if pool else "")

    # -- reading ------------------------------------------------------------------------------------

    def _client(self) -> Any:
        self.calls += 1
        return cf.client(self.target)

    @property
    def zone_id(self) -> str:
        if self._zone_id is None:
            name = self.target.zone.strip().lower()
            if len(name) == 32 and all(c in "0123456789abcdef" for c in name):
                self._zone_id = name
            else:
                self.calls += 1
                self._zone_id = cf.find_zone(self.target)["id"]
        return self._zone_id

    def _lb(self) -> dict[str, Any]:
        if self._lb_id is not None:
            with cf.translate("load_balancers.get", self.label):
                return cf.plain(self._client().load_balancers.get(self._lb_id, zone_id=self.zone_id))
        with cf.translate("load_balancers.list", self.label):
            found = [cf.plain(x) for x in self._client().load_balancers.list(zone_id=self.zone_id).result or []]
        wanted = self.target.load_balancer.strip().lower().rstrip(".")
        match = [x for x in found if x.get("id") == wanted or str(x.get("name", "")).lower().rstrip(".") == wanted]
        if not match:
            raise errors.NotFound(cf.PLATFORM, "load_balancers.list", self.label, "no such load balancer in the zone")
        self._lb_id = match[0]["id"]
        return match[0]

    def _pools(self) -> dict[str, dict[str, Any]]:
        with cf.translate("load_balancers.pools.list", f"account {self.target.account}"):
            page = self._client().load_balancers.pools.list(account_id=self.target.account)
            return {p["id"]: p for p in (cf.plain(x) for x in page.result or [])}

    def snapshot(self) -> dict[str, Any]:
        lb = self._lb()
        pools = self._pools()
        snap: dict[str, Any] = {"lb_id": lb["id"], "steering": {k: copy.deepcopy(lb.get(k)) for k in STEERING_KEYS},
                                "names": {pid: p.get("name", pid) for pid, p in pools.items()}}
        if self.pool:
            pid = self._pool_id(snap["names"], self.pool)
            snap["pool_id"] = pid
            snap["origins"] = copy.deepcopy(pools[pid].get("origins") or [])
        return snap

    @staticmethod
    def _pool_id(names: Mapping[str, str], name: str) -> str:
        for pid, pname in names.items():
            if name in (pid, pname):
                return pid
        raise errors.NotFound(cf.PLATFORM, "load_balancers.pools.list", f"pool {name}",
                              f"no pool named {name!r} (pools: {', '.join(sorted(names.values()))})")

    # -- weights --------------------------------------------------------------------------------------

    def members(self, snapshot: dict[str, Any]) -> list[str]:
        if self.pool:
            return [o["name"] for o in snapshot["origins"]]
        return [snapshot["names"].get(p, p) for p in snapshot["steering"].get("default_pools") or []]

    def weights(self, snapshot: dict[str, Any]) -> dict[str, float]:
        if self.pool:
            return {o["name"]: float(o.get("weight", 1)) for o in snapshot["origins"]}
        steering = snapshot["steering"]
        random = steering.get("random_steering") or {}
        default = float(random.get("default_weight", 1))
        explicit = random.get("pool_weights") or {}
        if steering.get("steering_policy") not in WEIGHTED_POLICIES:
            # Failover order: the first default pool gets everything.
            pools = steering.get("default_pools") or []
            return {snapshot["names"].get(p, p): (1.0 if i == 0 else 0.0) for i, p in enumerate(pools)}
        return {snapshot["names"].get(p, p): float(explicit.get(p, default)) for p in steering.get("default_pools") or []}

    def with_weights(self, snapshot: dict[str, Any], weights: Mapping[str, float]) -> dict[str, Any]:
        wanted = copy.deepcopy(snapshot)
        if self.pool:
            known = {o["name"] for o in wanted["origins"]}
            unknown = sorted(set(weights) - known)
            if unknown:
                raise errors.InvalidRequest(cf.PLATFORM, "pools.edit", self.label, f"no origins {unknown} in the pool")
            for origin in wanted["origins"]:
                if origin["name"] in weights:
                    origin["weight"] = round(float(weights[origin["name"]]), 2)
            return wanted
        steering = wanted["steering"]
        ids = {name: self._pool_id(wanted["names"], name) for name in weights}
        pools = list(steering.get("default_pools") or [])
        for pid in ids.values():
            if pid not in pools:
                pools.append(pid)
        random = dict(steering.get("random_steering") or {})
        pool_weights = dict(random.get("pool_weights") or {})
        for name, pid in ids.items():
            pool_weights[pid] = round(float(weights[name]), 2)
        random.update(pool_weights=pool_weights, default_weight=random.get("default_weight", 1))
        policy = steering.get("steering_policy")
        steering.update(default_pools=pools, random_steering=random,
                        steering_policy=policy if policy in WEIGHTED_POLICIES else "random")
        return wanted

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        keep = ("steering", "origins")
        return {k: a.get(k) for k in keep} == {k: b.get(k) for k in keep}

    # -- writing --------------------------------------------------------------------------------------

    def write(self, waiter: Any, current: dict[str, Any], wanted: dict[str, Any]) -> int:
        """PATCH what differs (the LB's steering, the pool's origins), then read it back; returns calls."""
        before = self.calls
        self._lb_id = wanted["lb_id"]
        if self.pool and current.get("origins") != wanted.get("origins"):
            with cf.translate("load_balancers.pools.edit", self.label):
                self._client().load_balancers.pools.edit(wanted["pool_id"], account_id=self.target.account,
                                                         origins=wanted["origins"])
        changed = {k: v for k, v in wanted["steering"].items() if current["steering"].get(k) != v}
        if changed:
            if "fallback_pool" in changed and changed["fallback_pool"] is None:
                changed.pop("fallback_pool")  # the API has no "no fallback"; it was never unset by us
            with cf.translate("load_balancers.edit", self.label):
                self._client().load_balancers.edit(wanted["lb_id"], zone_id=self.zone_id, **changed)
        waiter.log(f"{self.label}: weights now {self.weights(wanted)}")
        return self.calls - before

    def read_back(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The live state of what `snapshot` covers: one LB GET (and one pool GET in origin mode)."""
        self._lb_id = snapshot["lb_id"]
        lb = self._lb()
        live = {**snapshot, "steering": {k: copy.deepcopy(lb.get(k)) for k in STEERING_KEYS}}
        if self.pool:
            with cf.translate("load_balancers.pools.get", self.label):
                pool = cf.plain(self._client().load_balancers.pools.get(snapshot["pool_id"],
                                                                        account_id=self.target.account))
            live["origins"] = copy.deepcopy(pool.get("origins") or [])
        return live


class PoolHealth:
    """The `Health` capability of a load balancer: every default pool healthy at every PoP."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def pools(self) -> dict[str, bool]:
        lb = LoadBalancerWeights(self.target)
        snap = lb.snapshot()
        out = {}
        for pid in snap["steering"].get("default_pools") or []:
            with cf.translate("load_balancers.pools.health.get", f"pool {pid}"):
                data = cf.plain(cf.client(self.target).load_balancers.pools.health.get(
                    pid, account_id=self.target.account))
            pops = list((data.get("pop_health") or {}).values())
            out[snap["names"].get(pid, pid)] = bool(pops) and all(bool(p.get("healthy")) for p in pops)
        return out

    def health(self) -> tuple[bool, str]:
        pools = self.pools()
        bad = sorted(name for name, ok in pools.items() if not ok)
        return not bad, (f"unhealthy pools: {', '.join(bad)}" if bad else f"{len(pools)} pool(s) healthy")
