"""Summary and alert dicts: what a tick tells people, independent of the front end.

    summary = build_summary(run_id=..., tick_no=3, at=now, gap_seconds=None, final=False,
                            readings=readings, history={label: [values...]}, every=600, until=...)
    alert = build_alert(summary, signals, on_call=["@platform-oncall"])

A summary is `{run_id, tick_no, at, gap_seconds, final, state, signals: [...], every, ends_at}`,
each signal `{name, label, value, unit, baseline, threshold, state, sparkline, detail}`; the final
one also carries `chart_png` (bytes). An alert is the summary plus `on_call`, `breached` and
`evidence`: where to look. The evidence names the edge and the callers on purpose: when a service
wedges, its own logs and traces stay clean, so "check the service's logs" would send people to the
one place that shows nothing (seed 000).
"""

from __future__ import annotations

from typing import Any

from bot.watch.signals import CallerLog, EdgeRate, LogVolume, Probe, Reading, Signal, ThroughputFloor, worst

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24


def sparkline(values: list[float | None], width: int = SPARK_WIDTH) -> str:
    """`[1, 5, 9] -> "▁▄█"`; unreadable ticks are spaces; a flat line sits at the bottom."""
    values = values[-width:]
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARK[0] if high == 0 else SPARK[len(SPARK) // 2])
        else:
            out.append(SPARK[int(round((value - low) / span * (len(SPARK) - 1)))])
    return "".join(out)


def change_headline(signals: list[dict[str, Any]], previous: dict[str, str] | None,
                    previous_tick: int | None) -> str:
    """The summary's first line, in words: did anything change since the last summary?

    >>> change_headline([{"label": "probe", "state": "ok"}], {"probe": "ok"}, 3)
    'No change since summary #3: the 1 signal is ok.'
    >>> change_headline([{"label": "probe", "state": "breach"}], {"probe": "ok"}, 3)
    'Changed since summary #3: probe ok → breach.'
    """
    states = [s["state"] for s in signals]
    if not previous or previous_tick is None:
        counts = ", ".join(f"{states.count(k)} {k}" for k in ("breach", "warn", "ok") if states.count(k))
        return f"First summary: {len(signals)} signal(s), {counts or 'none read'}."
    moved = [f"{s['label']} {previous[s['label']]} → {s['state']}" for s in signals
             if s["label"] in previous and previous[s["label"]] != s["state"]]
    new = [f"{s['label']} (new, {s['state']})" for s in signals if s["label"] not in previous]
    if moved or new:
        return f"Changed since summary #{previous_tick}: " + "; ".join(moved + new) + "."
    same = worst(states) if states else "ok"
    if len(set(states)) <= 1:
        what = f"the {len(signals)} signal is {same}" if len(signals) == 1 else f"all {len(signals)} signals {same}"
    else:
        what = ", ".join(f"{states.count(k)} {k}" for k in ("breach", "warn", "ok") if states.count(k))
    return f"No change since summary #{previous_tick}: {what}."


def build_summary(*, run_id: str, tick_no: int, at: float, gap_seconds: float | None, final: bool,
                  readings: list[Reading], history: dict[str, list[float | None]], every: float,
                  until: float, chart_png: bytes | None = None, previous: dict[str, str] | None = None,
                  previous_tick: int | None = None) -> dict[str, Any]:
    """`previous`: each signal's state at `previous_tick`, the last summary (None for the first)."""
    signals = []
    for reading in readings:
        signals.append({
            "name": reading.name,
            "label": reading.label,
            "value": reading.value,
            "unit": reading.unit,
            "baseline": reading.baseline,
            "threshold": reading.threshold,
            "state": reading.state,
            "sparkline": sparkline(history.get(reading.label, [])),
            "detail": reading.detail,
        })
    summary: dict[str, Any] = {
        "run_id": run_id,
        "tick_no": tick_no,
        "at": at,
        "gap_seconds": gap_seconds,
        "final": final,
        "state": worst([s["state"] for s in signals]),
        "signals": signals,
        "every": every,
        "ends_at": until,
        "headline": change_headline(signals, previous, previous_tick),
    }
    if final:
        summary["chart_png"] = chart_png
    return summary


def evidence_for(signals: list[Signal], breached: list[str]) -> list[str]:
    """Where people should look: the edge first, then the callers, the probe, the work graphs."""
    edge: list[str] = []
    callers: list[str] = []
    probes: list[str] = []
    work: list[str] = []
    for signal in signals:
        spec = signal.spec
        if isinstance(signal, EdgeRate):
            if spec.alb:
                target = signal.targets.get(spec.alb)
                lb = getattr(target, "load_balancer", spec.alb)
                metric = "HTTPCode_ELB_504_Count" if signal.code == "504" else "HTTPCode_ELB_5XX_Count"
                edge.append(f"The edge's {signal.code}s at the load balancer: CloudWatch AWS/ApplicationELB {metric}"
                            f" for {lb}, beside HTTPCode_Target_5XX_Count (the service's own, which stays near 0)")
            elif spec.do_lb:
                edge.append(f"The edge's 5xx at the DigitalOcean load balancer {spec.do_lb}"
                            " (Monitoring: frontend HTTP responses)")
        elif isinstance(signal, CallerLog) and spec.caller_log:
            groups = ", ".join(spec.caller_log.log_groups)
            callers.append(f"The caller's logs: {groups} (Logs Insights: filter @message like /{spec.caller_log.pattern}/)")
        elif isinstance(signal, Probe):
            source = signal.source()
            host = f" (Host: {source.host})" if source.host else ""
            probes.append(f"The bot's own probe of {source.url}{host}: what a caller gets")
        elif isinstance(signal, (LogVolume, ThroughputFloor)) and signal.key in breached:
            what = "log volume" if isinstance(signal, LogVolume) else "throughput"
            work.append(f"The {what} graph: work stopped; a wedge shows as a cliff, not as errors")
    ordered: list[str] = []
    for line in (*edge, *callers, *probes, *work):
        if line not in ordered:
            ordered.append(line)
    ordered.append("The service's own logs and traces will look clean: a hung process reports nothing;"
                   " decide from the edge and the callers, and roll back if they agree")
    return ordered


def build_alert(summary: dict[str, Any], signals: list[Signal], *, on_call: list[str]) -> dict[str, Any]:
    breached = [s["label"] for s in summary["signals"] if s["state"] == "breach"]
    alert = dict(summary)
    alert["on_call"] = list(on_call)
    alert["breached"] = breached
    alert["evidence"] = evidence_for(signals, breached)
    return alert
