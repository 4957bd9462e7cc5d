"""A run's step rows kept in memory and refreshed by what the audit log says changed.

    rows = StepRows(store)
    rows.get(run_id)            # every step row, in order; re-reads only rows changed since last time
                                # (the list is shared and updated in place: read it, do not keep it)
    # a row re-read is a new dict object: callers cache derived values by row identity

Every change to a step row writes an audit event in the same transaction, and transactions are
serialised (`BEGIN IMMEDIATE`), so event ids are a commit-ordered log: the rows named by events
after the last id seen are exactly the rows that may differ. A run-level event (a re-plan, the
start of a rollback that adds steps) re-reads the whole run. This keeps the engine's cost per
transition flat however long the runbook is, and stays correct across processes sharing the file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Entry:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    listed: list[dict[str, Any]] = field(default_factory=list)  # rows in order, updated in place
    position: dict[str, int] = field(default_factory=dict)
    last_event: int = -1
    changed: set[str] = field(default_factory=set)
    full: bool = True
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: int = 0  # bumped by every full re-read
    log: list[str] = field(default_factory=list)  # keys re-read since the last full re-read, in order

    def note_outputs(self, row: dict[str, Any]) -> None:
        if row["phase"] != "forward":
            return
        if row["state"] in ("succeeded", "rolled_back") and row["result"]:
            self.outputs[row["step_id"]] = row["result"].get("outputs", {})
        else:
            self.outputs.pop(row["step_id"], None)


class StepRows:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            entry = self._entries.setdefault(run_id, _Entry())
            conn = self.store.conn()
            events = conn.execute("SELECT id, step_key FROM events WHERE run_id = ? AND id > ? ORDER BY id",
                                  (run_id, entry.last_event)).fetchall()
            if events:
                entry.last_event = events[-1][0]
            keys = {e[1] for e in events}
            if entry.last_event == -1 or None in keys or entry.full or (keys - set(entry.rows)):
                rows = self.store.get_steps(run_id)
                entry.rows = {r["key"]: r for r in rows}
                entry.order = [r["key"] for r in rows]
                entry.listed = list(rows)
                entry.position = {k: i for i, k in enumerate(entry.order)}
                entry.changed = set(entry.rows)
                entry.outputs = {}
                for row in rows:
                    entry.note_outputs(row)
                entry.generation += 1
                entry.log = []
                entry.full = not events and entry.last_event == -1  # nothing logged yet: read again next time
                return entry.listed
            entry.changed = keys
            for key in keys:
                row = self.store.get_step(run_id, key)
                if row is not None:
                    entry.rows[key] = row
                    entry.listed[entry.position[key]] = row
                    entry.note_outputs(row)
                    entry.log.append(key)
            return entry.listed

    def outputs(self, run_id: str) -> dict[str, dict[str, Any]]:
        """`outputs.<step id>` of the run's finished forward steps (a copy), kept up to date by `get`."""
        self.get(run_id)
        with self._lock:
            return dict(self._entries[run_id].outputs)

    def get_marked(self, run_id: str) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """`get`, with a mark of where the change log stood when these rows were current."""
        rows = self.get(run_id)
        with self._lock:
            entry = self._entries[run_id]
            return rows, (entry.generation, len(entry.log))

    def keys_between(self, run_id: str, old: tuple[int, int] | None, new: tuple[int, int]) -> list[str] | None:
        """Keys re-read between two marks (None: a full re-read happened, everything may differ).

            rows, mark = step_rows.get_marked(run_id)
            keys = step_rows.keys_between(run_id, my_last_mark, mark)   # a consumer keeps its own mark"""
        with self._lock:
            entry = self._entries[run_id]
            if old is None or old[0] != new[0] or new[0] != entry.generation:
                return None
            return entry.log[old[1]:new[1]]

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._entries.pop(run_id, None)
