"""The watch's own tables in the store: `watches`, `samples` (the scheduler's lease is the engine's).

    from bot.watch import tables
    tables.ensure(store)
    row = tables.get_watch(store, "r1")      # dict with JSON columns decoded, or None

`watches` holds one row per run's watch: its spec, the targets it reads (validated models, no
secrets), the schedule (`started_at`, `every`, `until`, `next_due`, `tick_no`) and what carries
from tick to tick (baseline profiles, probe failure streaks, file offsets, which signals were
already alerted). `tick_no` is the compare-and-set guard that makes a tick happen once however
many schedulers race for it. `samples` holds every signal's reading of every tick (the sparkline
and the chart are drawn from it). The scheduler's lease is a row of the engine's `leases` table (`bot.engine.leases`).
"""

from __future__ import annotations

import json
from typing import Any

from bot import secrets

WATCHES = "watches"
SAMPLES = "samples"

_JSON_COLUMNS = ("spec", "targets", "baselines", "carry", "alerted")


def dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(secrets.redact_obj(value), sort_keys=True, default=str)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def ensure(store: Any) -> None:
    if getattr(store, "_watch_tables_ready", False):
        return
    store.ensure_table(WATCHES, {
        "run_id": str, "spec": str, "targets": str, "state": str, "started_at": float, "every": float,
        "until": float, "next_due": float, "tick_no": int, "last_tick_at": float, "baselines": str,
        "carry": str, "alerted": str, "started_by": str, "stopped_by": str, "updated_at": float,
    }, pk="run_id")
    store.ensure_table(SAMPLES, {
        "run_id": str, "tick_no": int, "signal": str, "name": str, "at": float, "value": float,
        "baseline": float, "state": str, "unit": str, "threshold": str, "detail": str, "data": str,
    }, pk=("run_id", "tick_no", "signal"))
    with store.transaction() as conn:  # under the store's write lock: replicas starting together race here
        conn.execute(f"CREATE INDEX IF NOT EXISTS watches_state ON {WATCHES}(state)")
    store._watch_tables_ready = True


def _decode(row: Any) -> dict[str, Any]:
    out = dict(row)
    for column in _JSON_COLUMNS:
        if column in out:
            out[column] = loads(out[column])
    return out


def get_watch(store: Any, run_id: str) -> dict[str, Any] | None:
    ensure(store)
    row = store.conn().execute(f"SELECT * FROM {WATCHES} WHERE run_id = ?", (run_id,)).fetchone()
    return _decode(row) if row else None


def active_watches(store: Any) -> list[dict[str, Any]]:
    ensure(store)
    rows = store.conn().execute(f"SELECT * FROM {WATCHES} WHERE state = 'active' ORDER BY run_id").fetchall()
    return [_decode(r) for r in rows]


def samples(store: Any, run_id: str, signal: str | None = None) -> list[dict[str, Any]]:
    ensure(store)
    sql = f"SELECT * FROM {SAMPLES} WHERE run_id = ?"
    args: list[Any] = [run_id]
    if signal is not None:
        sql += " AND signal = ?"
        args.append(signal)
    rows = store.conn().execute(sql + " ORDER BY tick_no, signal", args).fetchall()
    out = []
    for row in rows:
        item = dict(row)
        item["data"] = loads(item["data"])
        out.append(item)
    return out
