"""Engine cost per step as the runbook grows: 10, 100 and 1000 no-op steps through the real store.

    python benchmarks/engine.py [--quick]

Each size runs a runbook of `wait 0s` steps start to finish (plan, compare-and-set transitions with
audit events, rendering, the heartbeat thread every applying step gets, and a channel that receives
every view as Slack's does) and prints the per-step cost. Flat cost means the 1000-step run costs per
step what the 10-step run does: "ratio" is per-step(1000) / per-step(10), target under 1.5, and the
1000-step per-step cost must be under 5 ms on SQLite, 30 ms on PostgreSQL (about ten commits of
~1 ms and thirty reads of ~0.15 ms per step on a local server: the price of a networked, durable store). Both backends run in the
same invocation (PostgreSQL at `--postgres` / `RUNBOOK_BOT_BENCH_PG`, default the local server;
skipped with a line saying so when it is not there), and the PostgreSQL/SQLite ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.engine.runner import Runner  # noqa: E402
from benchmarks._pg_store_db import DEFAULT_PG, store_database  # noqa: E402
from bot.engine.store import open_store  # noqa: E402

SIZES = (10, 100, 1000)
TARGET_RATIO = 1.5
TARGET_MS = {"sqlite": 5.0, "postgresql": 30.0}  # ~10 commits and ~30 reads per step, each a round trip


def runbook(folder: Path, steps: int) -> Path:
    path = folder / f"noop{steps}.yaml"
    body = "\n".join(f"  - {{id: s{i}, kind: wait, with: {{seconds: 0}}}}" for i in range(steps))
    path.write_text(f"name: noop{steps}\nparams:\n  n: {{type: int}}\nsteps:\n{body}\n")
    return path


class ListeningChannel:
    """A front end that receives every view (as Slack's does) and renders nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls += 1
        return call


def per_step_ms(where: str, folder: Path, steps: int, repeats: int) -> float:
    store = open_store(where)
    runner = Runner(store, ListeningChannel())
    path = runbook(folder, steps)
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        run = runner.start(path, {"n": str(i)}, started_by="bench", front_end="console")
        elapsed = time.perf_counter() - started
        assert run.state == "succeeded", run.state
        samples.append(elapsed * 1000 / steps)
    store.close()
    return statistics.median(samples)


def measure(label: str, where: str, folder: Path, repeats: dict[int, int]) -> dict[int, float]:
    per_step_ms(where, folder, 10, 3)  # warm imports, caches and the pool outside the measurement
    costs = {}
    for steps in SIZES:
        costs[steps] = per_step_ms(where, folder, steps, repeats[steps])
        print(f"{label:10s} {steps:5d} steps: {costs[steps]:.3f} ms per step (median of {repeats[steps]} runs)")
    return costs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats of each size")
    parser.add_argument("--postgres", default=os.environ.get("RUNBOOK_BOT_BENCH_PG", DEFAULT_PG),
                        help="an admin URL of a PostgreSQL server for the second backend (a database is created "
                             "and dropped)")
    args = parser.parse_args()
    repeats = {10: 20, 100: 3, 1000: 1} if args.quick else {10: 50, 100: 10, 1000: 3}
    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results["sqlite"] = measure("sqlite", str(folder / "engine.sqlite"), folder, repeats)
        with store_database(args.postgres, "engine") as url:
            if url:
                results["postgresql"] = measure("postgresql", url, folder, repeats)
    verdicts = {}
    for backend, costs in results.items():
        ratio = costs[1000] / costs[10]
        verdicts[backend] = {"per_step_ms": {str(k): round(v, 3) for k, v in costs.items()}, "ratio": round(ratio, 2),
                             "pass": ratio < TARGET_RATIO and costs[1000] < TARGET_MS[backend]}
        print(f"{backend}: ratio per-step(1000) / per-step(10): {ratio:.2f}; targets: ratio < {TARGET_RATIO}, "
              f"< {TARGET_MS[backend]} ms per step at 1000")
    if "postgresql" in results:
        print(f"ratio postgresql / sqlite per step at 1000: "
              f"{results['postgresql'][1000] / results['sqlite'][1000]:.2f} (the price of a networked store)")
    print(json.dumps({"benchmark": "engine", "backends": verdicts,
                      "target": f"ratio < {TARGET_RATIO}; ms/step at 1000 < {TARGET_MS}",
                      "pass": all(v["pass"] for v in verdicts.values())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
