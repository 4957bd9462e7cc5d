"""App Platform instance count through the app spec: get the app, change one component, update.

    from bot.platforms.digitalocean import app_scaling
    app = app_scaling.get_app("api-production")               # by id or by name
    app_scaling.instance_count(app, "web")                      # 2
    app_scaling.set_instance_count(app, "web", 0)

Why through the spec: App Platform has no "scale" call; the spec is the whole desired state, so the
update sends back the spec exactly as read with one number changed. A component with autoscaling
has no fixed count; that is refused rather than silently overridden.
(`bot.platforms.digitalocean.apps` is another adapter with its own get; this module stays apart on
purpose so that scaling never depends on how env diffs read apps.)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from bot.platforms import digitalocean as do
from bot.platforms import errors

SCALABLE = ("services", "workers")
# The contract's `instance_count` has `minimum: 1`: App Platform cannot park a component at zero.
MIN_INSTANCES = 1
ZERO_REFUSED = ("App Platform cannot scale a component below 1 instance (the API's instance_count minimum is 1): "
                "keep 1 as the warm standby")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def get_app(app: str, *, client: Any = None) -> dict[str, Any]:
    client = client or do.client()
    if _UUID.match(app):
        return do.call("apps.get", f"app {app}", client.apps.get, app, expect="app")["app"]
    page = 1
    while True:
        listing = do.call("apps.list", f"app {app}", client.apps.list, page=page, per_page=100, expect="apps")
        for found in listing["apps"]:
            if found.get("spec", {}).get("name") == app:
                return found
        if not (listing.get("links") or {}).get("pages", {}).get("next"):
            raise errors.NotFound(do.PLATFORM, "apps.list", f"app {app}", "no app with that name")
        page += 1


def component(app: dict[str, Any], name: str | None) -> tuple[str, dict[str, Any]]:
    """(`services`|`workers`, the component's spec): the named one, or the only one."""
    spec = app.get("spec", {})
    found = [(group, c) for group in SCALABLE for c in spec.get(group, []) or []]
    if name is not None:
        found = [(g, c) for g, c in found if c.get("name") == name]
    app_name = spec.get("name", app.get("id", "?"))
    if not found:
        raise errors.NotFound(do.PLATFORM, "apps.get", f"app {app_name}",
                              f"no service or worker named {name!r}" if name else "no service or worker")
    if len(found) > 1:
        names = ", ".join(c.get("name", "?") for _, c in found)
        raise errors.InvalidRequest(do.PLATFORM, "apps.get", f"app {app_name}",
                                    f"several components ({names}): name one with `component:` on the target")
    return found[0]


def instance_count(app: dict[str, Any], name: str | None) -> int:
    _group, comp = component(app, name)
    if comp.get("autoscaling"):
        raise errors.InvalidRequest(do.PLATFORM, "apps.get", f"component {comp.get('name')}",
                                    "the component autoscales; change its autoscaling limits instead")
    return int(comp.get("instance_count", 1))


def set_instance_count(app: dict[str, Any], name: str | None, count: int, *, client: Any = None) -> dict[str, Any]:
    """Send the app's spec back with one component's `instance_count` changed; returns the updated app."""
    if count < MIN_INSTANCES:
        raise errors.InvalidRequest(do.PLATFORM, "apps.update", f"app {app.get('spec', {}).get('name', app.get('id'))}",
                                    ZERO_REFUSED)
    client = client or do.client()
    instance_count(app, name)  # refuses autoscaled components
    spec = copy.deepcopy(app["spec"])
    group, comp = component({"spec": spec}, name)
    comp["instance_count"] = int(count)
    resource = f"app {spec.get('name', app['id'])} component {comp.get('name')}"
    return do.call("apps.update", resource, client.apps.update, app["id"], {"spec": spec}, expect="app")["app"]


def new_deployment_id(updated_app: dict[str, Any]) -> str | None:
    """The deployment an update started (`pending_deployment` or `in_progress_deployment`), if it says."""
    for key in ("in_progress_deployment", "pending_deployment"):
        found = updated_app.get(key) or {}
        if found.get("id"):
            return str(found["id"])
    return None


FAILED_PHASES = ("ERROR", "CANCELED", "SUPERSEDED")


def wait_deployed(app_id: str, *, timeout: float, now: Callable[[], float], sleep: Callable[[float], None],
                  deployment_id: str | None = None, interval: float = 5.0, client: Any = None) -> str:
    """Wait until the app is healthy again after an update; returns the final phase.

    With the `deployment_id` the update started, wait for that deployment to be ACTIVE (and fail on
    ERROR/CANCELED/SUPERSEDED); without one, wait until no deployment is pending or in progress and
    the active one is ACTIVE.
    """
    client = client or do.client()
    started = now()
    while True:
        if deployment_id:
            deployment = do.call("apps.get_deployment", f"app {app_id} deployment {deployment_id}",
                                 client.apps.get_deployment, app_id, deployment_id, expect="deployment")["deployment"]
            phase = deployment.get("phase")
            if phase == "ACTIVE":
                return phase
            if phase in FAILED_PHASES:
                raise errors.Unavailable(do.PLATFORM, "apps.get_deployment", f"app {app_id} deployment {deployment_id}",
                                         f"the deployment ended {phase}")
        else:
            app = do.call("apps.get", f"app {app_id}", client.apps.get, app_id, expect="app")["app"]
            pending = app.get("in_progress_deployment") or app.get("pending_deployment")
            phase = (app.get("active_deployment") or {}).get("phase")
            if not pending and phase in (None, "ACTIVE"):
                return phase or "ACTIVE"
        if now() - started >= timeout:
            raise errors.Unavailable(do.PLATFORM, "apps.get", f"app {app_id}",
                                     f"deployment not active after {timeout:.0f}s (phase {phase})")
        sleep(interval)


class AppScaler:
    """The `Scaler` capability of an App Platform component (instance_count, deployment ACTIVE)."""

    product = "App Platform"
    min_count = MIN_INSTANCES
    refuse_below = ZERO_REFUSED

    def __init__(self, target: Any, process_type: str = "web") -> None:
        self.target = target
        self.label = f"App Platform app {target.app}" + (f" component {target.component}" if target.component else "")
        self._app: dict[str, Any] | None = None

    def count(self) -> int:
        self._app = get_app(self.target.app)
        return instance_count(self._app, self.target.component)

    def set(self, count: int) -> None:
        self._app = set_instance_count(get_app(self.target.app), self.target.component, count)

    def wait_healthy(self, waiter: Any, count: int, timeout: float) -> None:
        from bot.platforms.capabilities import poll_delay

        waiter.progress(0, None, f"waiting for {self.label} to settle at {count}")
        app = self._app or get_app(self.target.app)
        wait_deployed(app["id"], deployment_id=new_deployment_id(app), timeout=timeout, now=waiter.clock.now,
                      sleep=waiter.sleep, interval=poll_delay(timeout))
