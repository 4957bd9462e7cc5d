"""Plain-text rendering of watch summaries and alerts, for the console front end.

    from bot.watch.render import console_lines
    for line in console_lines(summary):     # an alert dict renders with its on-call and evidence
        print(line)

One line per signal with its state, value, baseline, threshold and a sparkline of the watch so far,
then its detail indented. No colour codes: the console wraps these in rich styles if it likes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bot.watch.spec import format_duration

ICONS = {"ok": "ok    ", "warn": "WARN  ", "breach": "BREACH"}


def _num(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if abs(value - round(value)) < 1e-9:
        return f"{int(round(value)):,}"
    return f"{value:,.2f}"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def console_lines(summary: dict[str, Any]) -> list[str]:
    is_alert = "on_call" in summary
    head = "ALERT" if is_alert else ("final summary" if summary.get("final") else "summary")
    lines = [f"watch {head} · run {summary['run_id']} · tick {summary['tick_no']} · {_when(summary['at'])}"
             f" · {summary['state'].upper()}"]
    if summary.get("gap_seconds"):
        lines.append(f"  (the bot was away {format_duration(summary['gap_seconds'])}: missed ticks are"
                     " folded into this one)")
    width = max((len(s["label"]) for s in summary["signals"]), default=8)
    for signal in summary["signals"]:
        value = f"{_num(signal['value'])}{'%' if signal['unit'] == '%' else ' ' + signal['unit']}"
        baseline = f"baseline {_num(signal['baseline'])}" if signal.get("baseline") is not None else "no baseline"
        lines.append(f"  {ICONS.get(signal['state'], signal['state'])} {signal['label']:<{width}}  {value:<22}"
                     f" {baseline:<18} {signal['threshold']:<28} {signal.get('sparkline', '')}")
        lines.append(f"         {signal['detail']}")
    if summary.get("final"):
        lines.append("  the watch is over; chart: /runbook watch " + summary["run_id"] + " chart")
    if is_alert:
        lines.append(f"  breached: {', '.join(summary.get('breached', []))}")
        if summary.get("on_call"):
            lines.append(f"  on call: {' '.join(summary['on_call'])}")
        lines.append("  where to look:")
        lines.extend(f"    - {item}" for item in summary.get("evidence", []))
        lines.append(f"  roll back: runbook-bot rollback {summary['run_id']}  (goes through approval)")
    return lines
