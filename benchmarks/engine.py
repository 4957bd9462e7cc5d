"""Engine cost per step as the runbook grows: 10, 100 and 1000 no-op steps through the real store.

    python benchmarks/engine.py [--quick]

Each size runs a runbook of `wait 0s` steps start to finish (plan, compare-and-set transitions with
audit events, rendering, the heartbeat thread every applying step gets, and a channel that receives
every view as Slack's does) and prints the per-step cost. Flat cost means the 1000-step run costs per
step what the 10-step run does: the last line's "ratio" is per-step(1000) / per-step(10), target
under 1.5, and the 1000-step per-step cost must be under 5 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.engine.runner import Runner  # noqa: E402
from bot.engine.store import Store  # noqa: E402

SIZES = (10, 100, 1000)
TARGET_RATIO = 1.5
TARGET_MS = 5.0


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


def per_step_ms(folder: Path, steps: int, repeats: int) -> float:
    store = Store(folder / f"engine{steps}.sqlite")
    runner = Runner(store, ListeningChannel())
    path = runbook(folder, steps)
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        run = runner.start(path, {"n": str(i)}, started_by="bench", front_end="console")
        elapsed = time.perf_counter() - started
        assert run.state == "succeeded", run.state
        samples.append(elapsed * 1000 / steps)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats of each size")
    args = parser.parse_args()
    repeats = {10: 20, 100: 3, 1000: 1} if args.quick else {10: 50, 100: 10, 1000: 3}
    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        per_step_ms(folder, 10, 3)  # warm imports and caches outside the measurement
        for steps in SIZES:
            costs[steps] = per_step_ms(folder, steps, repeats[steps])
            print(f"{steps:5d} steps: {costs[steps]:.3f} ms per step (median of {repeats[steps]} runs)")
    ratio = costs[1000] / costs[10]
    print(f"ratio per-step(1000) / per-step(10): {ratio:.2f}; targets: ratio < {TARGET_RATIO}, "
          f"< {TARGET_MS} ms per step at 1000")
    print(json.dumps({"benchmark": "engine", "per_step_ms": {str(k): round(v, 3) for k, v in costs.items()},
                      "ratio": round(ratio, 2), "target": f"ratio < {TARGET_RATIO} and < {TARGET_MS} ms/step at 1000",
                      "pass": ratio < TARGET_RATIO and costs[1000] < TARGET_MS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
