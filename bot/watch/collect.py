"""Gather one tick: every CloudWatch signal of every service in ONE `GetMetricData` call.

    result = collect_tick(signals, Window(start=now - 600, end=now, every=600),
                          watch_started=started_at, baselines=None, carry={})
    result.readings          # one Reading per signal, judged
    result.baselines         # the pre-cutover profiles captured on the first tick (store them)
    result.calls             # {"cloudwatch.get_metric_data": 1, "logs.insights": 1}

Strategy, and why:

- All metrics of all CloudWatch signals are deduplicated (RequestCount feeds three signals) and read
  in one request per AWS account/region/endpoint, at `Period = every`. A tick therefore costs one
  call however many services, signals and log lines there are (500 metrics fit in one call;
  beyond that, one more call per 500). Ratios are computed here in Python.
- The baseline comes from before the cutover, captured once, on the first tick, by widening that
  same request to the 24 hours before the watch started. The profile is stored with the watch; later
  ticks read only their own interval. For a tick at time T the baseline is the interval ending at
  T - 24h (the same hour of day) when the history reaches back a day; otherwise the mean of the
  intervals since the history begins. A missing datapoint is a zero (see `cloudwatch`).
- `caller_log` signals sharing an account and a pattern share one Insights query (`by @log`).
- Direct signals (probes, DigitalOcean metrics, archives) run in a small thread pool so twenty
  probes that time out cost one timeout, not twenty.
- A source that fails makes its signals `warn` with the error in the detail (the typed
  `PlatformError` only): a watch that stops reporting because one API hiccuped would hide the
  other signals, and an unreadable signal is shown, never shown as ok.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bot.platforms import errors
from bot.platforms.aws import cloudwatch
from bot.platforms.aws import logs as insights
from bot.watch.signals import CallerLog, Reading, Signal, Window

HISTORY_SECONDS = 86400.0
SAME_HOUR_REACH = 3600.0  # history must start within this of "24h ago" to use the same hour of day


@dataclass
class TickResult:
    readings: list[Reading]
    baselines: dict[str, Any] | None  # the profiles to store (None: not captured yet, retry next tick)
    calls: dict[str, int] = field(default_factory=dict)


def _aws_key(target: Any) -> tuple[Any, ...]:
    return (getattr(target, "region", None), getattr(target, "endpoint_url", None),
            getattr(target, "role_arn", None), getattr(target, "profile", None))


def _judged(signal: Signal, value: float | None, baseline: float | None, data: dict[str, Any],
            window: Window) -> Reading:
    state, threshold, detail = signal.judge(value, baseline, data, window)
    return Reading(name=signal.name, label=signal.key, value=value, unit=signal.unit(window), baseline=baseline,
                   threshold=threshold, state=state, detail=detail, data=data)


def _unreadable(signal: Signal, window: Window, exc: Exception) -> Reading:
    return Reading(name=signal.name, label=signal.key, value=None, unit=signal.unit(window), baseline=None,
                   threshold="", state="warn", detail=f"could not read: {exc}", data={"error": str(exc)})


def baseline_at(profile: dict[str, Any] | None, at: float) -> tuple[float | None, str]:
    """The baseline for the interval ending at `at` from a stored profile, and how it was chosen."""
    if not profile or profile.get("first_data") is None:
        return None, "no history before the cutover"
    start, every, values, first = profile["start"], profile["every"], profile["values"], profile["first_data"]
    if first * every <= SAME_HOUR_REACH:
        index = int(round((at - HISTORY_SECONDS - every - start) / every))
        if 0 <= index < len(values):
            return float(values[index]), "same hour yesterday"
    tail = values[first:]
    return (sum(tail) / len(tail) if tail else None), f"mean of the {len(tail)} intervals before the cutover"


def collect_tick(signals: list[Signal], window: Window, *, watch_started: float,
                 baselines: dict[str, Any] | None, carry: dict[str, dict[str, Any]],
                 direct_workers: int = 8) -> TickResult:
    calls: dict[str, int] = {}
    first_tick = baselines is None
    stored = baselines
    baselines = dict(baselines or {})
    every = int(window.every)

    # Which metrics, grouped by AWS account/region/endpoint: current ones, and on the first tick the
    # baseline ones too (the request widens to the history window).
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    current: dict[str, tuple[tuple[Any, ...], dict[str, cloudwatch.MetricRef]]] = {}
    history: dict[str, tuple[tuple[Any, ...], dict[str, cloudwatch.MetricRef]]] = {}
    for signal in signals:
        roles = signal.cw_roles()
        if roles:
            key = _aws_key(roles[0])
            groups.setdefault(key, {"target": roles[0], "refs": []})["refs"].extend(roles[1].values())
            current[signal.key] = (key, roles[1])
        if first_tick:
            base_roles = signal.baseline_roles()
            if base_roles:
                key = _aws_key(base_roles[0])
                groups.setdefault(key, {"target": base_roles[0], "refs": []})["refs"].extend(base_roles[1].values())
                history[signal.key] = (key, base_roles[1])

    start = window.start
    if history:
        reach = HISTORY_SECONDS + window.every + max(0.0, window.end - watch_started)
        start = window.end - math.ceil(reach / window.every) * window.every
    series: dict[tuple[Any, ...], dict[cloudwatch.MetricRef, list[tuple[float, float]]]] = {}
    failed: dict[tuple[Any, ...], Exception] = {}
    for key, group in groups.items():
        try:
            series[key], made = cloudwatch.get_metric_data(group["target"], group["refs"], start=start,
                                                           end=window.end, period=every)
            calls["cloudwatch.get_metric_data"] = calls.get("cloudwatch.get_metric_data", 0) + made
        except errors.PlatformError as exc:
            failed[key] = exc

    # Baseline profiles (first tick only): per bucket before the watch started, the signal's value.
    for signal in signals:
        if signal.key not in history:
            continue
        key, roles = history[signal.key]
        if key in failed:
            continue  # retried on the next tick: the profile is only stored once it was read
        per_role = {role: series[key][ref] for role, ref in roles.items()}
        stamps = [t for t, _ in next(iter(per_role.values()))]
        values, first_data = [], None
        for index, stamp in enumerate(stamps):
            if stamp + window.every > watch_started - 1e-6:
                break  # the interval of the cutover itself, and anything after it, is not history
            sums = {role: points[index][1] for role, points in per_role.items()}
            if first_data is None and any(v > 0 for v in sums.values()):
                first_data = index
            value, _ = signal.value_from(sums)
            values.append(value or 0.0)
        baselines[signal.key] = {"start": stamps[0] if stamps else start, "every": window.every,
                                 "values": values, "first_data": first_data}

    readings: dict[str, Reading] = {}
    for signal in signals:
        if signal.key not in current:
            continue
        key, roles = current[signal.key]
        if key in failed:
            readings[signal.key] = _unreadable(signal, window, failed[key])
            continue
        sums = {role: _window_sum(series[key][ref], window) for role, ref in roles.items()}
        value, data = signal.value_from(sums)
        baseline, how = baseline_at(baselines.get(signal.key), window.end)
        data["baseline_from"] = how
        readings[signal.key] = _judged(signal, value, baseline, data, window)

    _caller_logs(signals, window, carry, readings, baselines, calls)

    direct = [s for s in signals if s.key not in readings]
    if direct:
        with ThreadPoolExecutor(max_workers=max(1, min(direct_workers, len(direct)))) as pool:
            futures = {s.key: pool.submit(_read_direct, s, window, carry.setdefault(s.key, {}), baselines)
                       for s in direct}
            for signal in direct:
                readings[signal.key] = futures[signal.key].result()

    if first_tick:
        # Keep the profiles only when every history read succeeded; otherwise the next tick retries.
        complete = all(key not in failed for key, _ in history.values())
        stored = baselines if complete else None
    return TickResult(readings=[readings[s.key] for s in signals], baselines=stored, calls=calls)


def _window_sum(points: list[tuple[float, float]], window: Window) -> float:
    return sum(v for t, v in points if window.start - 1e-6 <= t < window.end - 1e-6)


def _read_direct(signal: Signal, window: Window, carry: dict[str, Any], baselines: dict[str, Any]) -> Reading:
    try:
        value, data = signal.read(window, carry)
    except errors.PlatformError as exc:
        return _unreadable(signal, window, exc)
    baseline, how = baseline_at(baselines.get(signal.key), window.end)
    data["baseline_from"] = how
    return _judged(signal, value, baseline, data, window)


def _caller_logs(signals: list[Signal], window: Window, carry: dict[str, dict[str, Any]],
                 readings: dict[str, Reading], baselines: dict[str, Any], calls: dict[str, int]) -> None:
    """One Insights query per (account, pattern) for every caller_log signal, split back by @log."""
    grouped: dict[tuple[Any, ...], list[CallerLog]] = {}
    for signal in signals:
        if isinstance(signal, CallerLog):
            target = signal.query_target()
            grouped.setdefault((_aws_key(target), signal.spec.caller_log.pattern), []).append(signal)
    for (_key, pattern), members in grouped.items():
        target = members[0].query_target()
        log_groups = sorted({g for s in members for g in s.spec.caller_log.log_groups})
        try:
            counts: dict[str, int] = {}
            for offset in range(0, len(log_groups), 50):
                chunk = log_groups[offset:offset + 50]
                rows = insights.run_query(target, chunk, insights.count_query(pattern, bin_seconds=int(window.every),
                                                                              by_log=True),
                                          start=window.start, end=window.end)
                calls["logs.insights_query"] = calls.get("logs.insights_query", 0) + 1
                for log, _stamp, value in insights.parse_counts(rows, resource=f"{len(chunk)} log groups"):
                    name = log if log else (chunk[0] if len(chunk) == 1 else "")
                    counts[name] = counts.get(name, 0) + value
        except errors.PlatformError as exc:
            for signal in members:
                readings[signal.key] = _unreadable(signal, window, exc)
            continue
        for signal in members:
            value = float(sum(counts.get(g, 0) for g in signal.spec.caller_log.log_groups))
            readings[signal.key] = _judged(signal, value, None, {"by_log": {g: counts.get(g, 0)
                                                                            for g in signal.spec.caller_log.log_groups}},
                                           window)
