"""Benchmark: the cost of one watch tick does not grow with log volume.

    python benchmarks/watch_tick.py [--quick]

A watch over 20 services with every signal (log_volume, edge_504_rate, edge_5xx_rate,
throughput_floor, caller_log on CloudWatch in moto server; a probe per service against a local
HTTP service) ticks against two worlds that differ in log volume: 10k and 1M log lines per service
behind the IncomingLogEvents metric, and in the log events that really exist in each service's log
group for every tick window (a few in the small world; hundreds per window, per service, in the
large one). A naive tick would read those events (FilterLogEvents, or a Logs Insights query over the
service groups) and pay for them; ours reads the metric, so its time must not follow the events. It prints the API calls of a tick (target: constant,
at most 2 per service for the AWS signals) and the tick time in each world, then the ratio of the
1M tick time to the 10k one (target under 1.2): the lines are counted by CloudWatch, not by us.

The DigitalOcean App Platform path has no metric: the bot streams the archive the logs API hands
out. That cost is linear in the archive by nature, so it is reported apart (lines per second) with
its peak memory at 10k and at 1M lines, which must stay flat (streamed, constant memory).

The last line is one JSON object with "ratio", "target" and "pass".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RUNBOOK_BOT_FINGERPRINT_KEY", "bench")

import logging  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.ERROR)

from bot.engine.channel import QuietChannel  # noqa: E402
from bot.engine.store import Store  # noqa: E402
from bot.platforms import aws  # noqa: E402
from bot.platforms.aws import cloudwatch  # noqa: E402
from bot.platforms.digitalocean import app_logs  # noqa: E402
from bot.runbook.targets import AwsAlbTarget  # noqa: E402
from bot.watch import service  # noqa: E402

SERVICES = 20
EVERY = 600
TARGET_RATIO = 1.2


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops parallel probes' SYNs (1 s retransmit)
    daemon_threads = True


def _serve(handler) -> ThreadingHTTPServer:
    server = _Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _put_events(target, group: str, start: float, windows: int, per_window: int) -> int:
    """Real log events in `group`, `per_window` in each tick window after `start`; returns how many."""
    logs = aws.client(target, "logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="app/1")
    events = [{"timestamp": int((start + w * EVERY + 1 + i * (EVERY - 2) / per_window) * 1000),
               "message": f"INFO answered request {w}-{i} in 12ms"}
              for w in range(windows + 1) for i in range(per_window)]
    for i in range(0, len(events), 10_000):
        logs.put_log_events(logGroupName=group, logStreamName="app/1", logEvents=events[i:i + 10_000])
    return len(events)


def _world(moto_url: str, tag: str, lines_per_day: int, start: float, probe_url: str, history_buckets: int,
           events_per_window: int = 0, windows: int = 0):
    """Metric history for 20 services in this world; returns (targets, spec).

    moto evaluates GetMetricData in O(queries x buckets x datapoints in the window), so the first
    tick (which reads 24 h for the baselines) is slow in the emulator, not on AWS: the history
    behind it is kept to four hours (two with --quick). It does not change what a tick costs."""
    targets, signals = {}, []
    per_bucket = lines_per_day / 144
    for i in range(SERVICES):
        name = f"{tag}-alb-{i}"
        lb = f"app/{tag}-svc-{i}/{i:016x}"
        target = AwsAlbTarget(load_balancer=lb, endpoint_url=moto_url)
        targets[name] = target
        points = ([start - k * EVERY + 60 for k in range(1, history_buckets + 1)]
                  + [start + k * EVERY + 60 for k in range(0, 40)])
        cloudwatch.put_counts(target, cloudwatch.log_group_metric(f"/ecs/{tag}-svc-{i}"), [(t, per_bucket) for t in points])
        cloudwatch.put_counts(target, cloudwatch.alb_metric(lb, "RequestCount"), [(t, 5000) for t in points])
        cloudwatch.put_counts(target, cloudwatch.alb_metric(lb, "HTTPCode_ELB_5XX_Count"), [(t, 2) for t in points])
        aws.client(target, "logs").create_log_group(logGroupName=f"/ecs/{tag}-caller-{i}")
        if events_per_window:
            _put_events(target, f"/ecs/{tag}-svc-{i}", start, windows, events_per_window)
        signals += [
            {"name": "log_volume", "label": f"log_volume_{i}", "alb": name, "log_group": f"/ecs/{tag}-svc-{i}"},
            {"name": "edge_504_rate", "label": f"edge_504_{i}", "alb": name},
            {"name": "edge_5xx_rate", "label": f"edge_5xx_{i}", "alb": name},
            {"name": "throughput_floor", "label": f"throughput_{i}", "alb": name, "floor": 100},
            {"name": "caller_log", "label": f"caller_{i}", "alb": name,
             "caller_log": {"log_groups": [f"/ecs/{tag}-caller-{i}"]}},
            {"name": "probe", "label": f"probe_{i}", "probe": {"url": probe_url, "timeout": "5s"}, "attempts": 1},
        ]
    return targets, {"every": "10m", "for": "24h", "signals": signals}


def _count_calls(target) -> dict[str, int]:
    """Count every AWS API call made through the bot's session for this target (botocore events)."""
    counts: dict[str, int] = {}

    def on_call(event_name=None, **kwargs):
        operation = event_name.split(".", 2)[-1] if event_name else "?"
        service_name = event_name.split(".")[1] if event_name else "?"
        key = f"{service_name}.{operation}"
        counts[key] = counts.get(key, 0) + 1

    aws.session_for(target).events.register("before-call", on_call)
    return counts


def _archive_server(sizes: dict[str, int], start: float) -> tuple[ThreadingHTTPServer, dict[str, str]]:
    """Serve generated archives of the given line counts (generated once into temp files)."""
    folder = Path(tempfile.mkdtemp(prefix="watch-bench-"))
    files = {}
    from datetime import datetime, timezone

    for name, count in sizes.items():
        path = folder / f"{name}.log"
        step = 1200 / count
        with open(path, "w") as out:
            for i in range(count):
                stamp = datetime.fromtimestamp(start + i * step, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
                out.write(f"api {stamp}.000Z INFO answered request {i} in 12ms\n")
        files[name] = path

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = files[self.path.strip("/").removesuffix(".log")]
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 16):
                    self.wfile.write(chunk)

        def log_message(self, *args):
            pass

    server = _serve(Handler)
    return server, {name: f"http://127.0.0.1:{server.server_address[1]}/{name}.log" for name in sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 30 s")
    args = parser.parse_args()
    rounds = 10 if args.quick else 24
    archive_big = 100_000 if args.quick else 1_000_000

    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    ok_server = _serve(_Ok)
    probe_url = f"http://127.0.0.1:{ok_server.server_address[1]}/healthz"
    start = (int(time.time()) // EVERY) * EVERY - 12 * 3600

    t_setup = time.perf_counter()
    worlds = {}
    store = Store(Path(tempfile.mkdtemp(prefix="watch-bench-")) / "store.sqlite")
    counts = _count_calls(AwsAlbTarget(load_balancer="app/x/1", endpoint_url=moto_url))  # before any client
    events = {"small": 5, "large": 200 if args.quick else 1000}  # real events per service per tick window
    for tag, lines in (("small", 10_000), ("large", 1_000_000)):
        targets, spec = _world(moto_url, tag, lines, start, probe_url, 12 if args.quick else 24,
                               events_per_window=events[tag], windows=rounds)
        service.start(store, f"run-{tag}", spec, targets=targets, now=start)
        worlds[tag] = lines
    channel = QuietChannel()

    print(f"set up in {time.perf_counter() - t_setup:.1f}s", flush=True)
    first_tick = {}
    for tag in worlds:  # the first tick also reads the 24 h of history for the baselines
        began = time.perf_counter()
        service.run_due_tick(store, f"run-{tag}", channel, now=start)
        first_tick[tag] = time.perf_counter() - began
        print(f"first tick {tag}: {first_tick[tag]:.1f}s", flush=True)

    times: dict[str, list[float]] = {tag: [] for tag in worlds}
    calls: dict[str, list[dict[str, int]]] = {tag: [] for tag in worlds}
    for index in range(1, rounds + 1):
        now = start + index * EVERY
        order = list(worlds) if index % 2 else list(reversed(worlds))  # interleave: no drift favours one
        for tag in order:
            counts.clear()
            began = time.perf_counter()
            summary = service.run_due_tick(store, f"run-{tag}", channel, now=now)
            times[tag].append(time.perf_counter() - began)
            calls[tag].append(dict(counts))
            assert summary is not None and summary["state"] == "ok", summary and [
                (s["label"], s["detail"]) for s in summary["signals"] if s["state"] != "ok"]

    med = {tag: statistics.median(values) for tag, values in times.items()}
    # The ratio uses each world's fastest tick: on a shared machine noise only ever adds time, so the
    # minimum is the steadiest estimate of what a tick costs (the medians are printed beside it).
    best = {tag: min(values) for tag, values in times.items()}
    per_tick = {tag: calls[tag][-1] for tag in worlds}
    constant = all(c == calls["small"][0] for tag in worlds for c in calls[tag])
    total_calls = sum(per_tick["large"].values())
    per_service = total_calls / SERVICES
    for tag, lines in worlds.items():
        print(f"{lines:>9,} lines/service: tick {best[tag] * 1000:7.1f} ms best, {med[tag] * 1000:7.1f} ms median"
              f" of {rounds},"
              f" first tick with history {first_tick[tag] * 1000:7.1f} ms,"
              f" API calls {sum(per_tick[tag].values())} {per_tick[tag]}")
    ratio = best["large"] / best["small"]
    print(f"API calls per tick: {total_calls} for {SERVICES} services ({per_service:.2f} per service),"
          f" constant across ticks and volumes: {constant}")
    print(f"tick time ratio 1M/10k lines: {ratio:.3f} (target < {TARGET_RATIO})")

    # The DigitalOcean archive path: streamed counting, constant memory.
    archive, urls = _archive_server({"small": 10_000, "large": archive_big}, start)
    archive_figures = {}
    for name in ("small", "large"):
        began = time.perf_counter()
        counted = app_logs.count_lines([urls[name]], start=start, end=start + 1200)
        elapsed = time.perf_counter() - began
        tracemalloc.start()
        app_logs.count_lines([urls[name]], start=start, end=start + 1200)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        archive_figures[name] = {"lines": counted, "seconds": round(elapsed, 3),
                                 "lines_per_second": round(counted / elapsed), "peak_kib": round(peak / 1024, 1)}
        print(f"DO archive of {counted:,} lines: {elapsed:.2f}s ({counted / elapsed:,.0f} lines/s),"
              f" peak memory {peak / 1024:.0f} KiB")
    memory_ratio = archive_figures["large"]["peak_kib"] / max(archive_figures["small"]["peak_kib"], 1.0)
    print(f"archive peak memory ratio {archive_big:,}/10k lines: {memory_ratio:.2f} (streamed: stays flat)")

    archive.shutdown()
    ok_server.shutdown()
    moto.stop()
    passed = ratio < TARGET_RATIO and constant and per_service <= 2 and memory_ratio < 2
    print(json.dumps({
        "ratio": round(ratio, 3), "target": TARGET_RATIO, "pass": passed,
        "tick_ms_10k": round(best["small"] * 1000, 1), "tick_ms_1m": round(best["large"] * 1000, 1),
        "median_ratio": round(med["large"] / med["small"], 3),
        "api_calls_per_tick": total_calls, "api_calls_per_service": round(per_service, 3),
        "calls_constant": constant, "services": SERVICES, "rounds": rounds,
        "log_events_per_window": events, "logs_calls_per_tick": sum(v for k, v in per_tick["large"].items()
                                                                    if k.startswith("cloudwatch-logs.")),
        "archive": archive_figures, "archive_memory_ratio": round(memory_ratio, 2), "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
