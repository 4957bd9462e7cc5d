"""Heroku config vars: read (values registered as secrets at once), set and unset by name.

    from bot.platforms.heroku import config_vars
    env = config_vars.read_env(HerokuTarget(app="api"))      # SourceEnv; every value treated as secret
    config_vars.set_vars(target, {"WORKERS": "4"})            # PATCH /apps/{app}/config-vars
    config_vars.unset_vars(target, ["WORKERS"])               # PATCH with null values

Heroku returns every config var with its value and does not mark which are sensitive, so all of
them are registered with `bot.secrets` and compared by fingerprint only.
"""

from __future__ import annotations

from typing import Any

from bot import secrets
from bot.platforms import heroku
from bot.platforms.capabilities import RemovesAddedNames
from bot.platforms.envvalue import EnvValue, SourceEnv


def _path(target: Any) -> str:
    return f"/apps/{target.app}/config-vars"


def read_vars(target: Any, api: heroku.Api | None = None) -> dict[str, str]:
    api = api or heroku.Api()
    body = api.get(_path(target), resource=f"app {target.app}") or {}
    values = {str(k): "" if v is None else str(v) for k, v in body.items()}
    secrets.register_many(values.values())
    return values


def read_env(target: Any, api: heroku.Api | None = None) -> SourceEnv:
    env = SourceEnv(platform="heroku", resource=f"app {target.app}")
    env.values = {name: EnvValue(name, value, secret=True, origin="config var")
                  for name, value in read_vars(target, api).items()}
    return env


def set_vars(target: Any, values: dict[str, str], api: heroku.Api | None = None) -> None:
    secrets.register_many(values.values())
    api = api or heroku.Api()
    body = api.patch(_path(target), dict(values), resource=f"app {target.app}") or {}
    secrets.register_many(str(v) for v in body.values() if v is not None)


def unset_vars(target: Any, names: list[str], api: heroku.Api | None = None) -> None:
    api = api or heroku.Api()
    body = api.patch(_path(target), {name: None for name in names}, resource=f"app {target.app}") or {}
    secrets.register_many(str(v) for v in body.values() if v is not None)


class HerokuEnv(RemovesAddedNames):
    """`EnvSource`/`EnvSink` of a Heroku app: rollback unsets the names that were added; values
    overwritten (only with `overwrite: true`) cannot be put back, since values are never stored."""

    how = "a config-var update"
    plain_only = False
    restores_overwritten = False

    def __init__(self, target: Any) -> None:
        self.target = target

    def read(self) -> SourceEnv:
        return read_env(self.target)

    def set(self, values: dict[str, str], secret_names: set[str]) -> tuple[dict[str, Any], str]:
        set_vars(self.target, dict(values))
        return {}, f"config vars set: {', '.join(values)}"

    def undo(self, undo: dict[str, Any]) -> str:
        if not undo.get("added"):
            return "nothing to undo"
        unset_vars(self.target, undo["added"])
        return f"unset {', '.join(undo['added'])}"

    def verify_undo(self, undo: dict[str, Any]) -> tuple[bool, str] | None:
        return None  # the step checks that the added names are gone
