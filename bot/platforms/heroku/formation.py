"""Heroku formation: how many dynos of a process type run, read and changed.

    from bot.platforms.heroku import formation
    formation.quantity(api, "my-app", "web")          # 2
    formation.set_quantity(api, "my-app", "web", 0)
    formation.wait_up(api, "my-app", "web", 2, timeout=300, now=..., sleep=...)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.platforms import errors
from bot.platforms.heroku import PLATFORM, Api


def quantity(api: Api, app: str, process_type: str) -> int:
    body = api.get(f"/apps/{app}/formation/{process_type}", resource=f"app {app} formation {process_type}")
    return int(body["quantity"])


def set_quantity(api: Api, app: str, process_type: str, count: int) -> int:
    if count < 0:
        raise ValueError("quantity cannot be negative")
    body = api.patch(f"/apps/{app}/formation/{process_type}", {"quantity": int(count)},
                     resource=f"app {app} formation {process_type}")
    return int(body["quantity"])


def dynos_up(api: Api, app: str, process_type: str) -> int:
    dynos = api.get(f"/apps/{app}/dynos", resource=f"app {app} dynos") or []
    return sum(1 for d in dynos if d.get("type") == process_type and d.get("state") == "up")


def wait_up(api: Api, app: str, process_type: str, count: int, *, timeout: float, now: Callable[[], float],
            sleep: Callable[[float], None], interval: float = 5.0) -> int:
    """Wait until exactly `count` dynos of the type are `up` (0 means all stopped)."""
    started = now()
    while True:
        up = dynos_up(api, app, process_type)
        if up == count:
            return up
        if now() - started >= timeout:
            raise errors.Unavailable(PLATFORM, "GET /apps/{app}/dynos", f"app {app}",
                                     f"{up} {process_type} dynos up after {timeout:.0f}s, expected {count}")
        sleep(interval)



class HerokuScaler:
    """The `Scaler` capability of a Heroku formation (one process type's dynos)."""

    product = "Heroku"
    min_count = 0
    refuse_below = ""

    def __init__(self, target: Any, process_type: str = "web") -> None:
        self.target = target
        self.process_type = process_type
        self.label = f"Heroku app {target.app} {process_type} dynos"

    def count(self) -> int:
        return quantity(Api(), self.target.app, self.process_type)

    def set(self, count: int) -> None:
        set_quantity(Api(), self.target.app, self.process_type, count)

    def wait_healthy(self, waiter: Any, count: int, timeout: float) -> None:
        from bot.platforms.capabilities import poll_delay

        waiter.progress(0, None, f"waiting for {self.label} to settle at {count}")
        wait_up(Api(), self.target.app, self.process_type, count, timeout=timeout, now=waiter.clock.now,
                sleep=waiter.sleep, interval=poll_delay(timeout))
