"""The signals a watch reads, and how each judges itself ok / warn / breach.

    signals = build_signals(spec, targets)        # spec: WatchSpec, targets: {name: target model}
    readings = collect.collect_tick(signals, window, ...)   # see bot.watch.collect

Each signal has a value for the interval that just ended, a baseline (from before the cutover,
where it has one), a state and a detail line for people. They come in two kinds:

- CloudWatch signals name the metrics they need by *role* (`requests`, `elb_504`, `lines`, ...).
  `bot.watch.collect` reads every role of every signal of a tick in one `GetMetricData` call and
  hands each signal its sums; the signal computes its value (ratios in Python).
- Direct signals (`probe`, `caller_log`, DigitalOcean load balancer and app log archives, a local
  log file) read their source themselves once per tick.

Why these signals (seed 000): a wedged service's own logs and traces stay clean. What shows is the
edge answering 504 while the target reports no 5xx (`edge_504_rate`, `edge_5xx_rate`), the calling
service's logs filling with 504s (`caller_log`), a synthetic caller timing out (`probe`), and the
absence of work: log lines and served requests falling off a cliff (`log_volume`,
`throughput_floor`). Throughput from an ALB is `RequestCount` minus the edge's own 5xx: requests the
edge answered itself did no work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.platforms import errors, probe as probe_http
from bot.platforms.aws import cloudwatch
from bot.watch.spec import ProbeSource, SignalSpec, WatchSpec, format_duration

STATES = ("ok", "warn", "breach")


def worst(states: list[str]) -> str:
    return max(states, key=STATES.index, default="ok")


@dataclass
class Window:
    """The interval a tick reports on: [start, end), `every` long."""

    start: float
    end: float
    every: float

    @property
    def per(self) -> str:
        return format_duration(self.every)


@dataclass
class Reading:
    """One signal's result for one tick."""

    name: str
    label: str
    value: float | None
    unit: str
    baseline: float | None
    threshold: str
    state: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class SignalConfigError(ValueError):
    """A signal names a source it cannot use (wrong target platform, no source at all)."""


class Signal:
    name: ClassVar[str]
    unit_text: ClassVar[str] = ""

    def __init__(self, spec: SignalSpec, targets: dict[str, Any]) -> None:
        self.spec = spec
        self.targets = targets

    @property
    def key(self) -> str:
        return self.spec.key

    def unit(self, window: Window) -> str:
        return self.unit_text.format(per=window.per)

    source_fields: ClassVar[tuple[str, ...]] = ()

    def source_text(self) -> str:
        """Where the value comes from, for plans: `alb: new-alb`, `probe: https://...`."""
        text = next((f"{f}: {getattr(self.spec, f)}" for f in self.source_fields if getattr(self.spec, f)), "-")
        base = self.spec.baseline
        if base and (base.alb or base.log_group):
            text += f" (baseline: {'alb ' + base.alb if base.alb else 'log_group ' + str(base.log_group)})"
        return text

    # -- CloudWatch path ------------------------------------------------------------------------

    def cw_roles(self) -> tuple[Any, dict[str, cloudwatch.MetricRef]] | None:
        """(AWS target, {role: metric}) for the current value, or None for a direct signal."""
        return None

    def baseline_roles(self) -> tuple[Any, dict[str, cloudwatch.MetricRef]] | None:
        """Where the pre-cutover history is read; default: the current source's own metrics."""
        return self.cw_roles()

    def value_from(self, sums: dict[str, float]) -> tuple[float | None, dict[str, Any]]:
        raise NotImplementedError

    # -- direct path ----------------------------------------------------------------------------

    def read(self, window: Window, carry: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
        raise NotImplementedError

    # -- judging --------------------------------------------------------------------------------

    def judge(self, value: float | None, baseline: float | None, data: dict[str, Any],
              window: Window) -> tuple[str, str, str]:
        """(state, threshold text, detail)."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------------

    def _target(self, name: str | None, platform: str, field_name: str) -> Any:
        if not name:
            raise SignalConfigError(f"{self.key}: `{field_name}` is not set")
        if name not in self.targets:
            raise SignalConfigError(f"{self.key}: `{field_name}: {name}` is not a target of this runbook"
                                    f" (known: {', '.join(sorted(self.targets)) or 'none'})")
        target = self.targets[name]
        if not target.platform.startswith(platform):
            raise SignalConfigError(f"{self.key}: `{field_name}: {name}` is a {target.platform} target,"
                                    f" not {platform}")
        return target

    def _aws_for_logs(self, aws_name: str | None, alb_name: str | None, what: str) -> Any:
        if aws_name:
            return self._target(aws_name, "aws-", "aws")
        if alb_name:
            return self._target(alb_name, "aws-alb", "alb")
        raise SignalConfigError(f"{self.key}: {what} needs `aws` (or `alb`) to say which AWS account/region reads it")


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value - round(value)) < 1e-9:
        return f"{int(round(value)):,}"
    return f"{value:,.2f}"


def _edge_source(signal: Signal) -> Any:
    """The `MetricSource` of the signal's `edge:` target (any platform the registry gives one)."""
    from bot.platforms import registry
    from bot.platforms.capabilities import METRIC_SOURCE

    name = signal.spec.edge
    if name not in signal.targets:
        raise SignalConfigError(f"{signal.key}: `edge: {name}` is not a target of this runbook"
                                f" (known: {', '.join(sorted(signal.targets)) or 'none'})")
    target = signal.targets[name]
    if not registry.supports(target.platform, METRIC_SOURCE):
        raise SignalConfigError(f"{signal.key}: `edge: {name}` is a {target.platform} target, which has no edge "
                                f"metrics (platforms with them: {', '.join(registry.platforms_with(METRIC_SOURCE))})")
    return registry.adapter(target, METRIC_SOURCE)


class EdgeRate(Signal):
    """Share of requests the edge itself answered with 504 (or any 5xx), against the target's own 5xx."""

    code: ClassVar[str]
    unit_text = "%"
    source_fields = ("alb", "do_lb", "edge")

    def cw_roles(self):
        if not self.spec.alb:
            return None
        target = self._target(self.spec.alb, "aws-alb", "alb")
        metric = "HTTPCode_ELB_504_Count" if self.code == "504" else "HTTPCode_ELB_5XX_Count"
        return target, {
            "edge": cloudwatch.alb_metric(target.load_balancer, metric),
            "requests": cloudwatch.alb_metric(target.load_balancer, "RequestCount"),
            "target_5xx": cloudwatch.alb_metric(target.load_balancer, "HTTPCode_Target_5XX_Count"),
        }

    def baseline_roles(self):
        base = self.spec.baseline
        if base and base.alb:
            target = self._target(base.alb, "aws-alb", "baseline.alb")
            metric = "HTTPCode_ELB_504_Count" if self.code == "504" else "HTTPCode_ELB_5XX_Count"
            return target, {"edge": cloudwatch.alb_metric(target.load_balancer, metric),
                            "requests": cloudwatch.alb_metric(target.load_balancer, "RequestCount")}
        return self.cw_roles()

    def check(self) -> None:
        if self.spec.alb or self.spec.do_lb:
            return
        if self.spec.edge:
            _edge_source(self)
            return
        if self.spec.app:
            raise SignalConfigError(
                f"{self.key}: App Platform exposes no edge status metric; watch an app from the caller's"
                " side with `probe` and `caller_log`")
        raise SignalConfigError(f"{self.key}: needs `alb` (an aws-alb target) or `do_lb` (a load balancer id)")

    def value_from(self, sums):
        edge, requests = sums.get("edge", 0.0), sums.get("requests", 0.0)
        # An edge error is itself a request; guard against a 504 count larger than RequestCount.
        return _pct(edge, max(requests, edge)), {"edge": edge, "requests": requests,
                                                  "target_5xx": sums.get("target_5xx")}

    def read(self, window, carry):
        if self.spec.edge:
            sample = _edge_source(self).sample(window.start, window.end)
            edge = sample["edge_504" if self.code == "504" else "edge_5xx"]
            return _pct(edge, max(sample["requests"], edge)), {"edge": edge, "requests": sample["requests"],
                                                               "target_5xx": sample["origin_5xx"]}
        from bot.platforms.digitalocean import monitoring

        counts = monitoring.lb_frontend_responses(self.spec.do_lb, start=window.start, end=window.end)
        code = self.code if self.code == "5xx" or counts.has(self.code) else "5xx"
        edge = counts.get(code)
        return _pct(edge, max(counts.total, edge)), {"edge": edge, "requests": counts.total, "target_5xx": None,
                                                     "code_read": code}

    def judge(self, value, baseline, data, window):
        over = self.spec.over if self.spec.over is not None else 1.0
        warn_over = self.spec.warn_over if self.spec.warn_over is not None else over / 2
        what = "504" if self.code == "504" else "5xx"
        if data.get("code_read") and data["code_read"] != self.code:
            what = f"{data['code_read']} (this load balancer reports no separate {self.code})"
        detail = (f"{_fmt(data.get('edge'))} of {_fmt(data.get('requests'))} requests answered {what}"
                  f" by the edge")
        target_5xx = data.get("target_5xx")
        if target_5xx is not None:
            detail += f"; the service's own 5xx: {_fmt(target_5xx)}"
            if (data.get("edge") or 0) > 0 and not target_5xx:
                detail += " (its logs will look clean: the errors are made at the edge)"
        state = "breach" if value > over else "warn" if value > warn_over else "ok"
        return state, f"> {over:g}%", detail


class Edge504Rate(EdgeRate):
    name = "edge_504_rate"
    code = "504"


class Edge5xxRate(EdgeRate):
    name = "edge_5xx_rate"
    code = "5xx"


class LogVolume(Signal):
    """Lines the service logged in the interval, against the same interval before the cutover."""

    name = "log_volume"
    unit_text = "lines/{per}"
    source_fields = ("app", "log_file", "log_group")

    def check(self) -> None:
        if not (self.spec.log_group or self.spec.app or self.spec.log_file):
            raise SignalConfigError(f"{self.key}: needs `log_group`, `app` (a do-app target) or `log_file`")

    def cw_roles(self):
        if self.spec.app or self.spec.log_file or not self.spec.log_group:
            return None
        target = self._aws_for_logs(self.spec.aws, self.spec.alb, "log_group")
        return target, {"lines": cloudwatch.log_group_metric(self.spec.log_group)}

    def baseline_roles(self):
        base = self.spec.baseline
        if base and base.log_group:
            target = self._aws_for_logs(base.aws or self.spec.aws, base.alb or self.spec.alb, "baseline.log_group")
            return target, {"lines": cloudwatch.log_group_metric(base.log_group)}
        return self.cw_roles()

    def value_from(self, sums):
        return sums.get("lines", 0.0), {}

    def read(self, window, carry):
        if self.spec.app:
            from bot.platforms.digitalocean import app_logs

            target = self._target(self.spec.app, "do-app", "app")
            component = target.component or target.app
            urls = app_logs.historic_urls(target.app, component)
            return float(app_logs.count_lines(urls, start=window.start, end=window.end)), {"archives": len(urls)}
        return _count_new_lines(self.spec.log_file, carry)

    def judge(self, value, baseline, data, window):
        under = self.spec.under if self.spec.under is not None else 50.0
        warn_under = self.spec.warn_under if self.spec.warn_under is not None else max(under, 75.0)
        threshold = f"< {under:g}% of baseline" + (f" or < {_fmt(self.spec.floor)}" if self.spec.floor else "")
        if value is None:
            return "ok", threshold, data.get("note", "started counting")
        if self.spec.floor is not None and value < self.spec.floor:
            return "breach", threshold, f"{_fmt(value)} lines, under the floor of {_fmt(self.spec.floor)}"
        if not baseline:
            return "ok", threshold, f"{_fmt(value)} lines (no baseline from before the cutover)"
        pct = _pct(value, baseline)
        state = "breach" if pct < under else "warn" if pct < warn_under else "ok"
        detail = f"{_fmt(value)} lines, {pct:.0f}% of the {_fmt(baseline)} before the cutover"
        if state == "breach":
            detail += ": the service has gone quiet (a wedge logs nothing)"
        return state, threshold, detail


class ThroughputFloor(Signal):
    """Work done per interval (requests served by the targets, or log lines) against a floor."""

    name = "throughput_floor"
    source_fields = ("alb", "do_lb", "edge", "log_group")

    def unit(self, window):
        return f"{'requests' if (self.spec.alb or self.spec.do_lb or self.spec.edge) else 'lines'}/{window.per}"

    def check(self) -> None:
        if not (self.spec.alb or self.spec.do_lb or self.spec.edge or self.spec.log_group):
            raise SignalConfigError(f"{self.key}: needs `alb`, `do_lb`, `edge` or `log_group`")
        if self.spec.edge:
            _edge_source(self)
        if self.spec.floor is None and self.spec.under is None and not (self.spec.alb or self.spec.log_group):
            raise SignalConfigError(f"{self.key}: without a CloudWatch baseline, set an absolute `floor`")

    def _roles(self, alb: str | None, log_group: str | None, aws_name: str | None, prefix: str):
        if alb:
            target = self._target(alb, "aws-alb", f"{prefix}alb")
            return target, {"requests": cloudwatch.alb_metric(target.load_balancer, "RequestCount"),
                            "edge_5xx": cloudwatch.alb_metric(target.load_balancer, "HTTPCode_ELB_5XX_Count")}
        if log_group:
            target = self._aws_for_logs(aws_name, None, f"{prefix}log_group")
            return target, {"lines": cloudwatch.log_group_metric(log_group)}
        return None

    def cw_roles(self):
        if self.spec.do_lb or (self.spec.edge and not self.spec.alb):
            return None
        return self._roles(self.spec.alb, None if self.spec.alb else self.spec.log_group, self.spec.aws, "")

    def baseline_roles(self):
        base = self.spec.baseline
        if base and (base.alb or base.log_group):
            return self._roles(base.alb, base.log_group, base.aws or self.spec.aws, "baseline.")
        return self.cw_roles()

    def value_from(self, sums):
        if "requests" in sums:
            served = max(0.0, sums["requests"] - sums.get("edge_5xx", 0.0))
            return served, {"requests": sums["requests"], "edge_5xx": sums.get("edge_5xx", 0.0)}
        return sums.get("lines", 0.0), {}

    def read(self, window, carry):
        if self.spec.edge:
            sample = _edge_source(self).sample(window.start, window.end)
            return max(0.0, sample["requests"] - sample["edge_5xx"]), {"requests": sample["requests"],
                                                                         "edge_5xx": sample["edge_5xx"]}
        from bot.platforms.digitalocean import monitoring

        counts = monitoring.lb_frontend_responses(self.spec.do_lb, start=window.start, end=window.end)
        return max(0.0, counts.total - counts.get("5xx")), {"requests": counts.total, "edge_5xx": counts.get("5xx")}

    def judge(self, value, baseline, data, window):
        under = self.spec.under if self.spec.under is not None else 50.0
        warn_under = self.spec.warn_under if self.spec.warn_under is not None else max(under, 75.0)
        parts = []
        if self.spec.floor is not None:
            parts.append(f"< {_fmt(self.spec.floor)}")
        parts.append(f"< {under:g}% of baseline")
        threshold = " or ".join(parts)
        unit = self.unit(window).split("/")[0]
        if value is None:
            return "ok", threshold, "no reading"
        reasons, state = [], "ok"
        if self.spec.floor is not None and value < self.spec.floor:
            state = "breach"
            reasons.append(f"under the floor of {_fmt(self.spec.floor)}")
        if baseline:
            pct = _pct(value, baseline)
            if pct < under:
                state = "breach"
                reasons.append(f"{pct:.0f}% of the {_fmt(baseline)} before the cutover")
            elif pct < warn_under:
                state = worst([state, "warn"])
                reasons.append(f"{pct:.0f}% of the {_fmt(baseline)} before the cutover")
        elif self.spec.floor is not None and value < 1.5 * self.spec.floor:
            state = worst([state, "warn"])
            reasons.append("close to the floor")
        detail = f"{_fmt(value)} {unit} served"
        if data.get("edge_5xx"):
            detail += f" ({_fmt(data['edge_5xx'])} more answered 5xx by the edge itself)"
        if reasons:
            detail += ": " + "; ".join(reasons)
        if state == "breach":
            detail += " (the absence of work: a wedge raises no errors of its own)"
        return state, threshold, detail


class Probe(Signal):
    """The bot as a caller: `attempts` GETs per tick; `failures` failed in a row (across ticks) breach."""

    name = "probe"
    unit_text = "failed in a row"

    def source_text(self) -> str:
        source = self.source()
        return f"probe: {source.url}" + (f" (Host: {source.host})" if source.host else "")

    def source(self) -> ProbeSource:
        raw = self.spec.probe
        if raw is None:
            raise SignalConfigError(f"{self.key}: needs `probe: {{url, host}}` or `probe: <http target>`")
        if isinstance(raw, str):
            raw = ProbeSource(target=raw)
        if raw.target:
            target = self._target(raw.target, "http", "probe.target")
            raw = raw.model_copy(update={"url": raw.url or target.url, "host": raw.host or target.host})
        return raw

    def check(self) -> None:
        self.source()

    def read(self, window, carry):
        source = self.source()
        results = [probe_http.get(source.url, host=source.host, timeout=source.timeout, ok_status=source.ok_status)
                   for _ in range(self.spec.attempts)]
        streak = int(carry.get("streak", 0))
        for result in results:
            streak = 0 if result.ok else streak + 1
        carry["streak"] = streak
        failed = [r for r in results if not r.ok]
        latencies = sorted(r.latency for r in results)
        return float(streak), {"attempts": len(results), "failed": len(failed),
                               "last": results[-1].describe(), "latency_p50": latencies[len(latencies) // 2],
                               "url": source.url, "host": source.host}

    def judge(self, value, baseline, data, window):
        needed = self.spec.failures
        threshold = f"{needed} failed in a row"
        detail = (f"{data.get('failed', 0)}/{data.get('attempts', 0)} probes failed this tick; last: {data.get('last')}"
                  f"; median latency {data.get('latency_p50', 0.0):.2f}s")
        if value is not None and value >= needed:
            return "breach", threshold, detail + " (a synthetic caller sees what the service's logs cannot)"
        if data.get("failed"):
            return "warn", threshold, detail
        return "ok", threshold, detail


class CallerLog(Signal):
    """504s logged by a calling service (CloudWatch Logs Insights), per interval."""

    name = "caller_log"
    unit_text = "504s/{per}"

    def source_text(self) -> str:
        return "caller_log: " + ", ".join(self.spec.caller_log.log_groups) if self.spec.caller_log else "-"

    def check(self) -> None:
        self.query_target()

    def query_target(self) -> Any:
        source = self.spec.caller_log
        if source is None:
            raise SignalConfigError(f"{self.key}: needs `caller_log: {{log_groups: [...], pattern}}`")
        return self._aws_for_logs(source.aws or self.spec.aws, self.spec.alb, "caller_log")

    def judge(self, value, baseline, data, window):
        over = self.spec.over if self.spec.over is not None else 10.0
        warn_over = self.spec.warn_over if self.spec.warn_over is not None else 0.0
        groups = ", ".join(self.spec.caller_log.log_groups) if self.spec.caller_log else "?"
        detail = f"{_fmt(value)} lines matching /{self.spec.caller_log.pattern if self.spec.caller_log else ''}/ in {groups}"
        if value is None:
            return "ok", f"> {over:g}", "no reading"
        state = "breach" if value > over else "warn" if value > warn_over else "ok"
        return state, f"> {over:g}", detail


class PoolHealth(Signal):
    """Unhealthy pools behind a load balancer (`edge:` a target with `Health`, e.g. cloudflare-lb)."""

    name = "pool_health"
    unit_text = "unhealthy"
    source_fields = ("edge",)

    def _health(self) -> Any:
        from bot.platforms import registry
        from bot.platforms.capabilities import HEALTH

        name = self.spec.edge
        target = self.targets.get(name) if name else None
        if target is None or not registry.supports(target.platform, HEALTH):
            raise SignalConfigError(f"{self.key}: needs `edge:` naming a target with a health verdict "
                                    f"({', '.join(registry.platforms_with(HEALTH))})")
        return registry.adapter(target, HEALTH)

    def check(self) -> None:
        self._health()

    def read(self, window, carry):
        health = self._health()
        pools = health.pools() if hasattr(health, "pools") else {}
        if pools:
            bad = sorted(n for n, ok in pools.items() if not ok)
            return float(len(bad)), {"unhealthy": bad, "pools": len(pools)}
        ok, why = health.health()
        return (0.0 if ok else 1.0), {"unhealthy": [] if ok else [why], "pools": 1}

    def judge(self, value, baseline, data, window):
        detail = (f"unhealthy: {', '.join(data['unhealthy'])}" if data.get("unhealthy")
                  else f"{data.get('pools', 0)} pool(s) healthy")
        return ("breach" if value else "ok"), "> 0 unhealthy", detail


class ReplicationLag(Signal):
    """WAL held back by the runbook-bot replication slots on `database` (after a db.replicate cutover,
    the reverse slot on the new primary): growing lag, or a slot nobody reads, breaches.

    Why it matters after the cutover: the reverse replication is the way back, and its slot sits on
    the *new* production database. If the old side stops reading (its subscription disabled, the old
    server gone), the slot keeps every WAL segment and fills the new primary's disk, silently.
    Breach: a slot inactive for `failures` ticks in a row, a slot holding more than `lag_mib`, or lag
    that grew for `failures` ticks in a row; warn on the first inactive or growing tick.
    """

    name = "replication_lag"
    unit_text = "MiB held"
    source_fields = ("database",)

    def endpoint(self) -> Any:
        from types import SimpleNamespace

        from bot.platforms.postgres import endpoints

        if not self.spec.database:
            raise SignalConfigError(f"{self.key}: needs `database:` (env:NAME, a URL or {{target: ...}})")
        try:
            return endpoints.resolve(self.spec.database, SimpleNamespace(targets=self.targets), field="database")
        except endpoints.EndpointError as exc:
            raise SignalConfigError(f"{self.key}: {exc}") from None

    def check(self) -> None:
        self.endpoint()

    def source_text(self) -> str:
        return f"database: {self.endpoint().display()}"

    def read(self, window, carry):
        from bot.platforms.postgres import replication

        ep = self.endpoint()
        slots = replication.leftover_slots(ep)
        held = max((s["retained_bytes"] for s in slots), default=0) / 1048576
        inactive = dict(carry.get("inactive", {}))
        carry["inactive"] = {s["slot"]: (inactive.get(s["slot"], 0) + 1) for s in slots if not s["active"]}
        last = carry.get("last")
        carry["growing"] = (int(carry.get("growing", 0)) + 1) if last is not None and held > last else 0
        carry["last"] = held
        return held, {"slots": [{**s, "inactive_ticks": carry["inactive"].get(s["slot"], 0)} for s in slots],
                      "growing": carry["growing"], "host": ep.display()}

    def judge(self, value, baseline, data, window):
        needed, limit = self.spec.failures, self.spec.lag_mib
        threshold = f"> {limit:g} MiB held, or inactive / growing {needed} ticks"
        slots = data.get("slots", [])
        if not slots:
            return "ok", threshold, f"no runbook-bot replication slot on {data.get('host')}"
        held = ", ".join(f"{s['slot']} {s['retained_bytes'] / 1048576:.1f} MiB"
                         f"{'' if s['active'] else ' (inactive)'}" for s in slots)
        stale = [s for s in slots if s["inactive_ticks"] >= needed]
        if stale:
            names = ", ".join(s["slot"] for s in stale)
            return "breach", threshold, (f"{names} inactive for {needed}+ ticks on {data.get('host')}: nothing reads "
                                         f"it and its WAL fills that disk; drop it with db.replicate.stop or "
                                         f"pg_drop_replication_slot() ({held})")
        if value is not None and value > limit:
            return "breach", threshold, f"{value:.1f} MiB of WAL held back on {data.get('host')} ({held})"
        if data.get("growing", 0) >= needed:
            return "breach", threshold, f"lag grew {data['growing']} ticks in a row ({held})"
        if data.get("growing") or any(not s["active"] for s in slots):
            return "warn", threshold, held
        return "ok", threshold, held


SIGNAL_CLASSES: dict[str, type[Signal]] = {
    cls.name: cls for cls in (Edge504Rate, Edge5xxRate, LogVolume, ThroughputFloor, Probe, CallerLog, PoolHealth,
                              ReplicationLag)
}


def build_signals(spec: WatchSpec, targets: dict[str, Any]) -> list[Signal]:
    """Signal objects for a spec; raises SignalConfigError naming the signal and the field."""
    out = []
    for signal_spec in spec.resolved():
        signal = SIGNAL_CLASSES[signal_spec.name](signal_spec, targets)
        signal.check()
        signal.cw_roles()  # resolves targets now, so a wrong name fails at plan time
        signal.baseline_roles()
        out.append(signal)
    return out


def _count_new_lines(path: str | None, carry: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Lines appended to a local log file since the last tick (streamed; a truncated file restarts)."""
    if not path:
        raise SignalConfigError("log_file is not set")
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise errors.NotFound("local", "log_file", path, "no such file") from None
    offset = carry.get("offset")
    if offset is None or offset > size:
        carry["offset"] = size
        return None, {"note": "started counting new lines" if offset is None else "the file was truncated; restarted"}
    count = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset += len(chunk)
    carry["offset"] = offset
    return float(count), {}
