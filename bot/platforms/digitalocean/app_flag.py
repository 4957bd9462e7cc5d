"""One app-level environment variable of an App Platform app, set or removed through the app spec.

    from bot.platforms.digitalocean import app_flag, app_scaling
    app = app_scaling.get_app("api-production")
    app_flag.state(app, "MAINTENANCE")               # ("GENERAL", fingerprint) or None
    app_flag.set_flag(app, "MAINTENANCE", "1")       # one spec update (a redeploy)
    app_flag.set_flag(app, "MAINTENANCE", None)      # removed

Used for the generic maintenance switch (`app.maintenance` on App Platform): the app reads the flag
and serves its maintenance page.
"""

from __future__ import annotations

import copy
from typing import Any

from bot import secrets
from bot.platforms import digitalocean as do


def state(app: dict[str, Any], key: str) -> tuple[str, str] | None:
    """(type, fingerprint of the value) of the app-level variable, or None when it is not set."""
    for env in app.get("spec", {}).get("envs", []) or []:
        if env.get("key") == key:
            value = env.get("value")
            secrets.register(value)
            return str(env.get("type", "GENERAL")), secrets.fingerprint(value)
    return None


def set_flag(app: dict[str, Any], key: str, value: str | None, *, client: Any = None) -> dict[str, Any]:
    client = client or do.client()
    spec = copy.deepcopy(app["spec"])
    envs = [e for e in spec.get("envs", []) or [] if e.get("key") != key]
    if value is not None:
        envs.append({"key": key, "value": value, "scope": "RUN_TIME", "type": "GENERAL"})
    spec["envs"] = envs
    resource = f"app {spec.get('name', app['id'])} env {key}"
    return do.call("apps.update", resource, client.apps.update, app["id"], {"spec": spec}, expect="app")["app"]


class AppFlagMaintenance:
    """The `Maintenance` capability of an App Platform app: an app-level flag in the spec."""

    modes = ("env",)

    def __init__(self, target: Any) -> None:
        self.app = target.app

    def read(self, mode: str, env_var: str) -> Any:
        from bot.platforms.digitalocean import app_scaling

        found = state(app_scaling.get_app(self.app), env_var)
        return None if found is None else found[1]

    def write(self, mode: str, env_var: str, on: bool, value: str) -> None:
        from bot.platforms.digitalocean import app_scaling

        set_flag(app_scaling.get_app(self.app), env_var, value if on else None)
