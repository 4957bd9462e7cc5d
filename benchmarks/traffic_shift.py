"""A four-stage Cloudflare load-balancer shift with a breach at stage three, against the stand-in.

    python benchmarks/traffic_shift.py [--quick]

`traffic.shift` moves the `heroku` pool's traffic to `ecs` in stages [10, 25, 50, 100]; its gate
ticks a probe of a local origin that fails once ECS carries half the traffic, so stage three
(50 %) breaches and the step puts stage two back. Printed:
- API calls per stage (the PATCH, the read-back) and for the restore;
- breach to restored: from the moment stage three is live (the breach begins) to the restored
  weights read back; target under one watch tick plus 5 s;
- the rollback (`rollback` + `verify_rollback`: snapshot, PATCH, read-back) against a bare weights
  PATCH plus read-back GET with the same SDK client, median of the runs.

The stand-in is `tests/fixtures/cloudflare_standin.py` (HTTP on 127.0.0.1, every request and answer
validated against the vendored Cloudflare contract). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("CLOUDFLARE_EMAIL", "bench@example.com")
os.environ.setdefault("CLOUDFLARE_API_KEY", "bench-global-key")
os.environ.setdefault("RUNBOOK_BOT_FINGERPRINT_KEY", "bench")

from bot.platforms import cloudflare as cf  # noqa: E402
from bot.platforms.cloudflare.target import CloudflareLbTarget  # noqa: E402
from bot.steps.base import get_kind  # noqa: E402
from tests.fixtures.cloudflare_standin import CloudflareStandIn  # noqa: E402
from tests.fixtures.dns_server import step_context  # noqa: E402
from tests.test_traffic_shift import WeightedOrigin, _ecs_share  # noqa: E402

TARGET_RATIO = 3.0  # snapshot (LB + pools) + PATCH + read-back against PATCH + read-back


def one_run(tick: float) -> dict:
    api = CloudflareStandIn()
    api.start()
    zid = api.add_zone("example.com")
    heroku = api.add_pool("heroku", [("h", "api.herokudns.com", 1)])
    ecs = api.add_pool("ecs", [("a", "alb.example.net", 1)])
    lid = api.add_load_balancer(zid, "api.example.com", [heroku], heroku, steering_policy="off")
    state = lambda: api.load_balancers[zid][lid]  # noqa: E731
    origin = WeightedOrigin(lambda: _ecs_share(state, ecs) >= 0.5)
    try:
        target = CloudflareLbTarget(zone=zid, load_balancer=lid, account="b" * 32, api_url=api.url)
        ctx = step_context({"lb": target})
        kind = get_kind("traffic.shift")
        inputs = kind.Inputs.model_validate({
            "target": "lb", "from": "heroku", "to": "ecs", "stages": [10, 25, 50, 100], "soak": 3 * tick,
            "watch": {"every": tick, "delay": 0, "for": 3600, "signals": [
                {"name": "probe", "probe": {"url": origin.url, "timeout": 2}, "failures": 1, "attempts": 1}]}})
        result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
        stages = result.details["stages"]
        breach = stages[-1]
        breach_to_restored = breach["restored_at"] - breach["at"]

        started = time.perf_counter()
        undo = kind.rollback(ctx, inputs, result)
        assert kind.verify_rollback(ctx, inputs, result, undo).ok
        ours = time.perf_counter() - started
        assert state()["steering_policy"] == "off"

        # Baseline: the bare PATCH of the same weights plus one read-back GET, same client.
        client = cf.client(target)
        body = {k: copy.deepcopy(result.undo["after"]["steering"][k]) for k in ("random_steering", "steering_policy")}
        started = time.perf_counter()
        client.load_balancers.edit(lid, zone_id=zid, **body)
        client.load_balancers.get(lid, zone_id=zid)
        bare = time.perf_counter() - started
        return {"calls_per_stage": {f"{s['stage']}%": s["calls"] for s in stages},
                "restore_calls": breach.get("restore_calls"), "breach_stage": result.details.get("breach_stage"),
                "breach_to_restored_s": breach_to_restored, "ours_s": ours, "bare_s": bare,
                "violations": list(api.violations)}
    finally:
        origin.stop()
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs, tick = (3, 0.5) if args.quick else (10, 1.0)
    results = [one_run(tick) for _ in range(runs)]
    first = results[0]
    print(f"stages: API calls per stage (PATCH + read-back): {first['calls_per_stage']}; "
          f"restore after the breach at {first['breach_stage']}%: {first['restore_calls']} calls")
    worst = max(r["breach_to_restored_s"] for r in results)
    print(f"breach to restored (worst of {runs}): {worst:.3f}s; target < one tick ({tick:g}s) + 5s")
    ours = statistics.median(r["ours_s"] for r in results)
    bare = statistics.median(r["bare_s"] for r in results)
    print(f"rollback (snapshot + PATCH + read-back) median {ours * 1000:.1f} ms; bare PATCH + GET {bare * 1000:.1f} ms")
    violations = sum(len(r["violations"]) for r in results)
    ratio = ours / bare if bare else float("inf")
    ok = ratio <= TARGET_RATIO and worst < tick + 5 and violations == 0 and first["breach_stage"] == 50
    print(json.dumps({"benchmark": "traffic_shift", "ratio": round(ratio, 3), "target": TARGET_RATIO,
                      "breach_to_restored_s": round(worst, 3), "restore_target_s": tick + 5,
                      "calls_per_stage": first["calls_per_stage"], "contract_violations": violations,
                      "runs": runs, "pass": ok}))


if __name__ == "__main__":
    main()
