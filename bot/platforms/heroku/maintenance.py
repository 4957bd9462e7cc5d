"""Heroku maintenance mode: the router answers every request with the maintenance page.

    from bot.platforms.heroku import maintenance
    maintenance.is_on(api, "my-app")        # False
    maintenance.set(api, "my-app", True)
"""

from __future__ import annotations

from typing import Any

from bot.platforms.heroku import Api


def is_on(api: Api, app: str) -> bool:
    return bool(api.get(f"/apps/{app}", resource=f"app {app}")["maintenance"])


def set(api: Api, app: str, on: bool) -> bool:  # noqa: A001 (reads as maintenance.set)
    body = api.patch(f"/apps/{app}", {"maintenance": bool(on)}, resource=f"app {app}")
    return bool(body["maintenance"])


def config_var_is_set(api: Api, app: str, key: str) -> tuple[bool, str | None]:
    """(is it set, its fingerprint): the value itself never leaves this function."""
    from bot import secrets

    values = api.get(f"/apps/{app}/config-vars", resource=f"app {app} config vars") or {}
    secrets.register_many(v for v in values.values() if isinstance(v, str))
    if key not in values:
        return False, None
    return True, secrets.fingerprint(values[key])


def set_config_var(api: Api, app: str, key: str, value: str | None) -> None:
    """Set (or with None, unset) one config var; Heroku restarts the dynos with it."""
    api.patch(f"/apps/{app}/config-vars", {key: value}, resource=f"app {app} config var {key}")


class HerokuMaintenance:
    """The `Maintenance` capability of a Heroku app: its own mode, or a config var the app reads."""

    modes = ("platform", "env")

    def __init__(self, target: Any) -> None:
        self.app = target.app

    def read(self, mode: str, env_var: str) -> Any:
        if mode == "platform":
            return is_on(Api(), self.app)
        is_set, fp = config_var_is_set(Api(), self.app, env_var)
        return fp if is_set else None

    def write(self, mode: str, env_var: str, on: bool, value: str) -> None:
        if mode == "platform":
            set(Api(), self.app, on)
        else:
            set_config_var(Api(), self.app, env_var, value if on else None)
