"""The watch API the engine, the CLI and the chat front ends call.

    from bot.watch import service
    service.start(store, run_id, spec, targets=ctx.targets)   # schedules; first tick due at once
    service.tick_now(store, run_id, channel)                   # an extra tick now (`/runbook watch RUN now`)
    service.stop(store, run_id, by="U123")                     # `/runbook watch RUN stop`
    service.status(store, run_id)                              # schedule + last reading per signal
    png = service.chart_png(store, run_id)                     # `/runbook watch RUN chart`

Scheduled ticks are run by `bot.watch.scheduler.WatchScheduler` (one per store, via a lease), which
calls `run_due_tick`. Every tick, scheduled or on demand, claims its number with a compare-and-set
on `watches.tick_no` before reading anything, so a tick is taken once even when two schedulers or
a scheduler and a person race for it. What a tick does:

1. claim (number, gap since the last tick when slots were missed, final or not, next due time);
2. read every signal (`collect.collect_tick`: one GetMetricData call for all CloudWatch signals);
3. store each reading in `samples` and the carried state (baselines, probe streaks) in `watches`;
4. post the summary through `channel.post_summary(run_view, summary)`;
5. when a signal newly breaches, post `channel.post_alert(run_view, alert)` (on-call, evidence,
   the front end adds the Rollback button). A signal that stays in breach is not re-alerted every
   tick; one that recovers and breaches again is.
"""

from __future__ import annotations

import io
import math
import time
from typing import Any

from bot.engine.channel import RunView
from bot.runbook.targets import TargetBase, parse_target
from bot.watch import tables
from bot.watch.collect import collect_tick
from bot.watch.signals import Signal, Window, build_signals
from bot.watch.spec import WatchSpec
from bot.watch.summary import build_alert, build_summary

# APScheduler fires on wall-clock datetimes (microseconds); the store keeps float seconds. A job
# that fires a hair before `next_due` still counts as due.
DUE_SLACK = 1.0


class WatchError(Exception):
    """A watch request that cannot be done as asked (the message says why and what to do)."""


# -- start / stop --------------------------------------------------------------------------------

def _spec(spec: WatchSpec | dict[str, Any]) -> WatchSpec:
    return spec if isinstance(spec, WatchSpec) else WatchSpec.model_validate(spec)


def _targets_json(targets: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, target in (targets or {}).items():
        out[name] = target.model_dump(mode="json") if isinstance(target, TargetBase) else dict(target)
    return out


def load_targets(raw: dict[str, Any] | None) -> dict[str, TargetBase]:
    return {name: parse_target(value) for name, value in (raw or {}).items()}


def signals_for(watch: dict[str, Any]) -> tuple[WatchSpec, list[Signal]]:
    spec = WatchSpec.model_validate(watch["spec"])
    return spec, build_signals(spec, load_targets(watch["targets"]))


def start(store: Any, run_id: str, spec: WatchSpec | dict[str, Any], *, targets: dict[str, Any] | None = None,
          now: float | None = None, started_by: str = "") -> dict[str, Any]:
    """Schedule the run's watch: every `every` for `for`, the first tick due immediately.

    Starting the same spec again is a no-op (a retried step); a different spec while one is active
    raises `WatchError`. Signal sources are checked now (a wrong target name fails here, not at 3 am).
    """
    spec = _spec(spec)
    targets_raw = _targets_json(targets or {})
    build_signals(spec, load_targets(targets_raw))  # raises SignalConfigError naming the field
    tables.ensure(store)
    now = time.time() if now is None else now
    spec_json = spec.dump()
    with store.transaction() as conn:
        row = conn.execute(f"SELECT state, spec FROM {tables.WATCHES} WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None and row["state"] == "active":
            if tables.loads(row["spec"]) == tables.loads(tables.dumps(spec_json)):
                return status(store, run_id)
            raise WatchError(f"run {run_id} already has an active watch with another spec; stop it first"
                             f" (/runbook watch {run_id} stop)")
        conn.execute(f"DELETE FROM {tables.SAMPLES} WHERE run_id = ?", (run_id,))
        conn.execute(
            f"INSERT OR REPLACE INTO {tables.WATCHES}(run_id, spec, targets, state, started_at, every, until,"
            " next_due, tick_no, last_tick_at, baselines, carry, alerted, started_by, stopped_by, updated_at)"
            " VALUES (?, ?, ?, 'active', ?, ?, ?, ?, 0, NULL, NULL, ?, ?, ?, NULL, ?)",
            (run_id, tables.dumps(spec_json), tables.dumps(targets_raw), now, spec.every, now + spec.for_, now,
             tables.dumps({}), tables.dumps([]), started_by, now),
        )
    _poke(store)
    return status(store, run_id)


def stop(store: Any, run_id: str, *, by: str = "", now: float | None = None) -> bool:
    """Stop an active watch; True if this call stopped it (False: none active)."""
    tables.ensure(store)
    now = time.time() if now is None else now
    with store.transaction() as conn:
        cur = conn.execute(f"UPDATE {tables.WATCHES} SET state = 'stopped', stopped_by = ?, updated_at = ?"
                           " WHERE run_id = ? AND state = 'active'", (by, now, run_id))
        stopped = cur.rowcount == 1
    if stopped:
        _poke(store)
    return stopped


def _poke(store: Any) -> None:
    """Tell schedulers in this process to re-read the watches now (others do on their next sync)."""
    from bot.watch import scheduler

    scheduler.notify_changed(store)


# -- ticks ---------------------------------------------------------------------------------------

def _claim(store: Any, run_id: str, now: float, on_demand: bool) -> dict[str, Any] | None:
    """Take the next tick number if the watch is active and (unless on demand) due."""
    with store.transaction() as conn:
        row = conn.execute(f"SELECT * FROM {tables.WATCHES} WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or row["state"] != "active":
            return None
        every, started, until, due = row["every"], row["started_at"], row["until"], row["next_due"]
        last = row["last_tick_at"]
        gap = None
        final = False
        next_due = due
        state = "active"
        if not on_demand:
            if due > now + DUE_SLACK:
                return None
            missed = math.floor((now - due) / every + 1e-9)
            if missed >= 1 and last is not None:
                gap = now - last
            elif missed >= 1:
                gap = now - started
            if now >= until - DUE_SLACK:
                final = True
                state = "finished"
            else:
                slot = math.floor((now - started) / every + 1e-9) + 1
                next_due = min(started + slot * every, until)
        cur = conn.execute(
            f"UPDATE {tables.WATCHES} SET tick_no = tick_no + 1, next_due = ?, last_tick_at = ?, state = ?,"
            " updated_at = ? WHERE run_id = ? AND tick_no = ? AND state = 'active'",
            (next_due, now, state, now, run_id, row["tick_no"]),
        )
        if cur.rowcount != 1:
            return None
        claimed = tables._decode(row)
        claimed.update(tick_no=row["tick_no"] + 1, gap_seconds=gap, final=final, next_due=next_due)
        return claimed


def default_run_view(store: Any, run_id: str) -> RunView:
    """A RunView from the store's run row (the engine may pass its own `runner.view` instead)."""
    run = store.get_run(run_id)
    if run is None:
        return RunView(id=run_id, runbook="", state="unknown", params={}, started_by="", front_end="",
                       created_at=0.0, updated_at=0.0, steps=[])
    return RunView(id=run["id"], runbook=run["runbook"], state=run["state"], params=run["params"],
                   started_by=run["started_by"], front_end=run["front_end"], created_at=run["created_at"],
                   updated_at=run["updated_at"], steps=[], chat=run["chat"], error=run["error"],
                   dry_run=run["dry_run"])


def run_due_tick(store: Any, run_id: str, channel: Any, *, now: float | None = None,
                 run_view: Any = None) -> dict[str, Any] | None:
    """The scheduled tick: does nothing (returns None) unless the watch is active and due."""
    return _tick(store, run_id, channel, now=time.time() if now is None else now, on_demand=False,
                 run_view=run_view)


def tick_now(store: Any, run_id: str, channel: Any, *, now: float | None = None,
             run_view: Any = None) -> dict[str, Any]:
    """An extra tick now, on demand; the schedule is unchanged. Raises WatchError when no watch is active."""
    summary = _tick(store, run_id, channel, now=time.time() if now is None else now, on_demand=True,
                    run_view=run_view)
    if summary is None:
        raise WatchError(f"run {run_id} has no active watch")
    return summary


def _tick(store: Any, run_id: str, channel: Any, *, now: float, on_demand: bool,
          run_view: Any) -> dict[str, Any] | None:
    tables.ensure(store)
    claimed = _claim(store, run_id, now, on_demand)
    if claimed is None:
        return None
    view_fn = run_view or (lambda rid: default_run_view(store, rid))
    try:
        spec, signals = signals_for(claimed)
        end = now - spec.delay
        if spec.every >= 60:
            end = math.floor(end / 60) * 60  # CloudWatch answers best on whole minutes
        window = Window(start=end - spec.every, end=end, every=spec.every)
        carry = claimed["carry"] or {}
        result = collect_tick(signals, window, watch_started=claimed["started_at"],
                              baselines=claimed["baselines"], carry=carry)
    except Exception as exc:
        # The tick number is taken; say so in the run's thread rather than skip it silently.
        channel.notify(view_fn(run_id), f"watch tick {claimed['tick_no']} could not run: {exc}", "error")
        raise
    tick_no = claimed["tick_no"]
    breached = [r.label for r in result.readings if r.state == "breach"]
    new_breaches = [b for b in breached if b not in (claimed["alerted"] or [])]
    with store.transaction() as conn:
        for reading in result.readings:
            conn.execute(
                f"INSERT OR REPLACE INTO {tables.SAMPLES}(run_id, tick_no, signal, name, at, value, baseline, state,"
                " unit, threshold, detail, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, tick_no, reading.label, reading.name, now, reading.value, reading.baseline, reading.state,
                 reading.unit, reading.threshold, reading.detail, tables.dumps(reading.data)),
            )
        conn.execute(f"UPDATE {tables.WATCHES} SET baselines = COALESCE(baselines, ?), carry = ?, alerted = ?"
                     " WHERE run_id = ?",
                     (tables.dumps(result.baselines) if result.baselines is not None else None,
                      tables.dumps(carry), tables.dumps(breached), run_id))
    history = _history(store, run_id)
    previous, previous_tick = _previous_states(store, run_id, tick_no)
    chart = chart_png(store, run_id) if claimed["final"] or new_breaches else None
    summary = build_summary(run_id=run_id, tick_no=tick_no, at=now, gap_seconds=claimed["gap_seconds"],
                            final=claimed["final"], readings=result.readings, history=history, every=spec.every,
                            until=claimed["until"], chart_png=chart, previous=previous, previous_tick=previous_tick)
    summary["calls"] = result.calls
    alert = None
    if new_breaches:
        alert = build_alert(summary, signals, on_call=spec.on_call)
        alert["new_breaches"] = new_breaches
        alert["chart_png"] = chart  # the alert carries the chart too: people act on the alert, not the summary
    view = view_fn(run_id)
    channel.post_summary(view, summary)
    if alert is not None:
        channel.post_alert(view, alert)
    return summary


def _previous_states(store: Any, run_id: str, tick_no: int) -> tuple[dict[str, str], int | None]:
    """Each signal's state at the last tick before `tick_no`, and that tick's number."""
    earlier = [s for s in tables.samples(store, run_id) if s["tick_no"] < tick_no]
    if not earlier:
        return {}, None
    last = max(s["tick_no"] for s in earlier)
    return {s["signal"]: s["state"] for s in earlier if s["tick_no"] == last}, last


def last_headline(store: Any, run_id: str) -> str | None:
    """The first line of the watch's latest summary, rebuilt from the stored samples (None before any)."""
    from bot.watch.summary import change_headline

    rows = tables.samples(store, run_id)
    if not rows:
        return None
    last = max(r["tick_no"] for r in rows)
    previous, previous_tick = _previous_states(store, run_id, last)
    signals = [{"label": r["signal"], "state": r["state"]} for r in rows if r["tick_no"] == last]
    return f"#{last}: " + change_headline(signals, previous, previous_tick)


def _history(store: Any, run_id: str) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for sample in tables.samples(store, run_id):
        out.setdefault(sample["signal"], []).append(sample["value"])
    return out


# -- reading back --------------------------------------------------------------------------------

def status(store: Any, run_id: str) -> dict[str, Any]:
    """The watch's schedule and each signal's latest reading; `{"state": "none"}` when there is none."""
    watch = tables.get_watch(store, run_id)
    if watch is None:
        return {"run_id": run_id, "state": "none"}
    latest: dict[str, dict[str, Any]] = {}
    for sample in tables.samples(store, run_id):
        latest[sample["signal"]] = {k: sample[k] for k in ("tick_no", "at", "value", "baseline", "state", "unit",
                                                           "detail")}
    return {
        "run_id": run_id, "state": watch["state"], "every": watch["every"], "started_at": watch["started_at"],
        "until": watch["until"], "next_due": watch["next_due"], "tick_no": watch["tick_no"],
        "last_tick_at": watch["last_tick_at"], "on_call": (watch["spec"] or {}).get("on_call", []),
        "signals": latest,
    }


def chart_png(store: Any, run_id: str) -> bytes:
    """A PNG of the whole watch so far: one panel per signal, value and baseline, breaches marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    by_signal: dict[str, list[dict[str, Any]]] = {}
    for sample in tables.samples(store, run_id):
        by_signal.setdefault(sample["signal"], []).append(sample)
    if not by_signal:
        raise WatchError(f"run {run_id} has no watch samples yet")
    figure = Figure(figsize=(8, 1.9 * len(by_signal) + 0.6), dpi=100)
    colours = {"ok": "#2e7d32", "warn": "#f9a825", "breach": "#c62828"}
    for index, (label, rows) in enumerate(by_signal.items()):
        axes = figure.add_subplot(len(by_signal), 1, index + 1)
        ticks = [r["tick_no"] for r in rows]
        values = [r["value"] if r["value"] is not None else float("nan") for r in rows]
        axes.plot(ticks, values, color="#1565c0", linewidth=1.4)
        axes.scatter(ticks, values, c=[colours.get(r["state"], "grey") for r in rows], s=14, zorder=3)
        baselines = [r["baseline"] if r["baseline"] is not None else float("nan") for r in rows]
        if any(b == b for b in baselines):
            axes.plot(ticks, baselines, color="grey", linestyle="--", linewidth=1, label="baseline")
        axes.set_title(f"{label} ({rows[-1]['unit']})", fontsize=9, loc="left")
        axes.tick_params(labelsize=7)
    figure.suptitle(f"watch of run {run_id}", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
