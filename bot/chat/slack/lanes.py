"""One ordered lane of Slack sends per run, on a small shared pool of sender threads.

    lanes = Lanes(workers=4)
    lanes.submit("r-1", post_header)      # r-1's sends run one at a time, in the order given
    lanes.submit("r-2", post_plan)        # r-2 does not wait behind r-1's 429 back-off
    lanes.drain(timeout=10)               # everything submitted so far has run
    lanes.close()

A run lives in one Slack thread, so its messages must keep their order; but one run's thread waiting
out a rate limit (the client sleeps through `Retry-After`) must not hold up every other run's thread,
as a single sender thread did.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any


class Lanes:
    def __init__(self, workers: int = 4, *, name: str = "slack-send") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]] = {}

    def submit(self, lane: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run `fn(*args)` after everything submitted to `lane` before it; returns its future."""
        future: Future[Any] = Future()
        with self._lock:
            queue = self._queues.get(lane)
            if queue is not None:          # the lane is running: its worker picks this up in turn
                queue.append((future, fn, args))
                return future
            self._queues[lane] = deque([(future, fn, args)])
        self._pool.submit(self._run_lane, lane)
        return future

    def _run_lane(self, lane: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[lane]
                if not queue:
                    del self._queues[lane]  # idle lanes cost nothing
                    return
                future, fn, args = queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 -- handed to whoever waits on the future
                future.set_exception(exc)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted to any lane so far has run (tests, shutdown)."""
        with self._lock:
            lanes = list(self._queues)
        futures = [self.submit(lane, lambda: None) for lane in lanes]
        _, pending = wait(futures, timeout=timeout)
        if pending:
            raise TimeoutError(f"Slack sends still queued after {timeout:g} s")

    def close(self) -> None:
        """Stop taking work; a running lane still sends what it holds (its worker runs until empty)."""
        self._pool.shutdown(wait=True)
