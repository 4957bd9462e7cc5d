"""Who owns an applying step, whether that owner is still alive, and the heartbeat that says so.

    token = process_token()                 # "host:pid:starttime:nonce", one per process
    owner_alive(token)                      # True / False / None (another host: cannot tell)
    beats = Heartbeats(store, token)        # one engine thread per process
    with beats.beating(run_id, key):
        kind.apply(ctx, inputs, plan)       # beats go on while apply waits on I/O

A PID alone is not an identity: after a container restart PID 1 is alive again, and PIDs are
reused. The token therefore carries the process's start time (from /proc, in clock ticks since
boot): a live PID whose start time differs is a different process, and the owner is dead.
The heartbeat runs on the engine's own thread, independent of the step's code, so a step blocked
on a slow server or a boto waiter still beats.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("runbook_bot.engine")

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 20.0  # ten missed beats


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


_TOKEN: str | None = None
_TOKEN_PID: int | None = None


def process_token() -> str:
    """This process's owner token (a forked child gets its own)."""
    global _TOKEN, _TOKEN_PID
    pid = os.getpid()
    if _TOKEN is None or _TOKEN_PID != pid:
        _TOKEN = f"{socket.gethostname()}:{pid}:{_start_time(pid) or '-'}:{secrets.token_hex(4)}"
        _TOKEN_PID = pid
    return _TOKEN


def parse_token(token: str) -> tuple[str, int, str | None] | None:
    """(host, pid, start time) of a token; old `host:pid` tokens have no start time."""
    parts = token.split(":")
    try:
        if len(parts) >= 4:
            return ":".join(parts[:-3]), int(parts[-3]), (None if parts[-2] == "-" else parts[-2])
        host, _, pid = token.rpartition(":")
        return host, int(pid), None
    except ValueError:
        return None


def owner_alive(token: str | None) -> bool | None:
    """True: provably alive (same host, same PID, same start time). False: provably gone.
    None: cannot tell (another host); the heartbeat's age decides."""
    if not token:
        return False
    if token == process_token():
        return True
    parsed = parse_token(token)
    if parsed is None:
        return False
    host, pid, started = parsed
    if host != socket.gethostname():
        return None
    now_started = _start_time(pid)
    if now_started is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return None
        return None if started is None else False
    if started is not None and now_started != started:
        return False  # the PID was reused by another process
    return True


class Heartbeats:
    """The engine's heartbeat: one daemon thread per process beating every step this process is
    applying, every `every` seconds, whatever the steps' own code is doing.

        beats = Heartbeats(store, owner)
        with beats.beating(run_id, key):
            kind.apply(ctx, inputs, plan)      # may block on I/O for minutes; the beat goes on

    One thread for all steps (not one per step) keeps the per-step cost flat; the beat is still
    independent of every step's code, which is what liveness needs."""

    def __init__(self, store: Any, owner: str, every: float = HEARTBEAT_SECONDS) -> None:
        self.store, self.owner, self.every = store, owner, every
        self._active: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            with self._lock:
                active = list(self._active)
            for run_id, key in active:
                try:
                    self.store.heartbeat(run_id, key, self.owner)
                except Exception as exc:  # a busy store must not kill the beat; the next one tries again
                    log.warning("heartbeat of %s/%s failed: %s", run_id, key, exc)

    def beating(self, run_id: str, key: str) -> _Beating:
        return _Beating(self, (run_id, key))

    def _add(self, item: tuple[str, str]) -> None:
        with self._lock:
            self._active[item] = self._active.get(item, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="runbook-heartbeat", daemon=True)
                self._thread.start()

    def _remove(self, item: tuple[str, str]) -> None:
        with self._lock:
            left = self._active.get(item, 1) - 1
            if left <= 0:
                self._active.pop(item, None)
            else:
                self._active[item] = left


class _Beating:
    def __init__(self, beats: Heartbeats, item: tuple[str, str]) -> None:
        self.beats, self.item = beats, item

    def __enter__(self) -> _Beating:
        self.beats._add(self.item)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.beats._remove(self.item)
