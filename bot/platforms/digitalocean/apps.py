"""App Platform: an app's environment (app-level and component envs) and changing it by spec update.

    from bot.platforms.digitalocean import apps
    env = apps.read_env(target)                       # SourceEnv; SECRET values unknown (EV[1:...])
    change = apps.add_envs(target, {"WORKERS": ("4", False)})   # (value, secret?) -> SpecChange
    apps.remove_envs(target, change.location, ["WORKERS"])      # what rollback does
    apps.masked_spec(spec)                            # the spec with every value fingerprinted

Every call goes through `bot.platforms.digitalocean.call` with the key the answer must carry, so a
404 that pydo returns as a body is a `NotFound` naming the app. `AppsApi(client=..., headers=...)`
lets a caller pass its own pydo client and per-call headers (the contract tests send Prism's
`Prefer: code=404` this way, through pydo's own `headers=` keyword).

What the process gets: app-level `envs`, overridden by the component's own `envs`, for the
components that run a process (services, workers, jobs). A variable scoped `BUILD_TIME` is not in
the running process and is left out of the run-time environment (with a note). A `SECRET`
variable's value comes back encrypted (`EV[1:...]`): it is reported as present with an unknown
value, so the matrix compares it by presence and says so. On update the encrypted value is sent
back unchanged, which App Platform keeps as it is.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot import secrets
from bot.platforms import digitalocean as do
from bot.platforms import errors
from bot.platforms.envvalue import EnvValue, SourceEnv

RUNTIME_COMPONENTS = ("services", "workers", "jobs")
ALL_COMPONENTS = ("services", "workers", "jobs", "static_sites", "functions")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
# Spec fields outside `envs` that may hold credentials (registry credentials, log destinations).
_SENSITIVE_KEYS = ("password", "token", "api_key", "credentials", "secret", "headers")


class AppsApi:
    """The App Platform calls this project makes, each checked and mapped to typed errors."""

    def __init__(self, client: Any = None, headers: dict[str, str] | None = None) -> None:
        self._client = client
        self.headers = dict(headers or {})

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = do.client()
        return self._client

    def _call(self, name: str, resource: str, fn: Any, *args: Any, expect: str | None, **kwargs: Any) -> Any:
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        return do.call(name, resource, fn, *args, expect=expect, **kwargs)

    def list_apps(self, per_page: int = 100) -> Iterator[dict[str, Any]]:
        page, seen = 1, 0
        while True:
            # An account with no apps answers without an "apps" key, so the check is on "meta".
            body = self._call("apps.list", "apps", self.client.apps.list, page=page, per_page=per_page,
                              expect="meta")
            items = body.get("apps") or []
            yield from items
            seen += len(items)
            total = (body.get("meta") or {}).get("total")
            if not items or not (body.get("links") or {}).get("pages", {}).get("next"):
                return
            if isinstance(total, int) and seen >= total:
                return  # a "next" link past the total (mocks do this) must not loop forever
            page += 1

    def get(self, app_id: str) -> dict[str, Any]:
        return self._call("apps.get", f"app {app_id}", self.client.apps.get, app_id, expect="app")["app"]

    def find(self, app: str) -> dict[str, Any]:
        """An app by id, or by its spec name (looked up in the app list)."""
        if _UUID.match(app):
            return self.get(app)
        for item in self.list_apps():
            if (item.get("spec") or {}).get("name") == app:
                return item
        raise errors.NotFound(do.PLATFORM, "apps.list", f"app {app}", "no app with this name")

    def update_spec(self, app_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"spec": spec}
        return self._call("apps.update", f"app {app_id}", self.client.apps.update, app_id, body,
                          expect="app")["app"]


def _components(spec: dict[str, Any], kinds: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in kinds:
        for component in spec.get(kind) or []:
            yield kind, component


def _pick_component(spec: dict[str, Any], name: str, app: str) -> tuple[str, dict[str, Any]]:
    for kind, component in _components(spec, ALL_COMPONENTS):
        if component.get("name") == name:
            return kind, component
    known = ", ".join(c.get("name", "?") for _, c in _components(spec, ALL_COMPONENTS)) or "none"
    raise errors.NotFound(do.PLATFORM, "apps.get", f"component {name} of app {app}", f"components: {known}")


def _env_values(envs: list[dict[str, Any]], origin: str, notes: list[str]) -> dict[str, EnvValue]:
    # Registered in one call before use: each registration recompiles the mask pattern.
    # GENERAL values are plain (secret only when the name says so); SECRET values are never readable.
    secrets.register_plain_many((str(i.get("key", "")), str(i.get("value", ""))) for i in envs or []
                                if i.get("type") != "SECRET")
    out: dict[str, EnvValue] = {}
    for item in envs or []:
        key = item["key"]
        scope = item.get("scope") or "RUN_AND_BUILD_TIME"
        if scope == "BUILD_TIME":
            notes.append(f"{key} ({origin}) is BUILD_TIME only: not in the running process")
            continue
        if item.get("type") == "SECRET":
            out[key] = EnvValue(key, None, secret=True, origin=f"{origin} SECRET (encrypted)", scope=scope)
        else:
            value = str(item.get("value", ""))
            out[key] = EnvValue(key, value, origin=origin, scope=scope)
    return out


def env_of_spec(spec: dict[str, Any], component: str | None = None, *, resource: str = "") -> SourceEnv:
    """The run-time environment a spec gives its process(es); pure (tests and the fake use it)."""
    app_name = spec.get("name", "?")
    env = SourceEnv(platform="do-app", resource=resource or f"app {app_name}")
    app_level = _env_values(spec.get("envs") or [], "app spec", env.notes)
    if component:
        _, chosen = _pick_component(spec, component, app_name)
        components = [chosen]
    else:
        components = [c for _, c in _components(spec, RUNTIME_COMPONENTS)]
    if not components:
        env.values = dict(app_level)
    for comp in components:
        cname = comp.get("name", "?")
        merged = dict(app_level)
        merged.update(_env_values(comp.get("envs") or [], f"component {cname}", env.notes))
        for name, value in merged.items():
            earlier = env.values.get(name)
            if earlier is not None and (earlier.known != value.known or earlier.fingerprint() != value.fingerprint()):
                env.notes.append(f"{name} differs between components; set `component` on the target to pick one")
            env.values.setdefault(name, value)
        if comp.get("run_command"):
            env.commands.append(str(comp["run_command"]))
    return env


def read_env(target: Any, api: AppsApi | None = None) -> SourceEnv:
    api = api or AppsApi()
    app = api.find(target.app)
    return env_of_spec(app.get("spec") or {}, target.component, resource=f"app {target.app}")


@dataclass
class SpecChange:
    app_id: str
    location: str  # "app" or the component name whose envs were changed
    prior_spec: dict[str, Any]  # holds plain values: keep in memory only; store masked_spec() of it
    new_spec: dict[str, Any]
    added: list[str]
    changed: list[str]
    created_env_list: bool = False  # the location had no `envs` key before: rollback drops it again


def _env_list(spec: dict[str, Any], location: str, app: str) -> list[dict[str, Any]]:
    if location == "app":
        return spec.setdefault("envs", [])
    _, component = _pick_component(spec, location, app)
    return component.setdefault("envs", [])


def add_envs(target: Any, values: dict[str, tuple[str, bool]], api: AppsApi | None = None) -> SpecChange:
    """Set variables (name -> (value, secret?)) in the target component's envs, or app-level envs.

    A variable already there is replaced in place (its scope kept); a new one is RUN_TIME, and
    SECRET when it came from a secret store, so App Platform encrypts it.
    """
    api = api or AppsApi()
    app = api.find(target.app)
    prior = app.get("spec") or {}
    spec = copy.deepcopy(prior)
    location = target.component or "app"
    holder = spec if location == "app" else _pick_component(spec, location, target.app)[1]
    created = "envs" not in holder
    envs = _env_list(spec, location, target.app)
    # Every env list of the spec: an existing variable is replaced wherever it is defined (a
    # component's own entry overrides the app-level one, so changing only one would not take).
    all_lists = [spec.get("envs") or []] + [c.get("envs") or [] for _, c in _components(spec, ALL_COMPONENTS)]
    added, changed = [], []
    secrets.register_many(v for v, _ in values.values())
    for name, (value, is_secret) in values.items():
        kind = "SECRET" if is_secret else "GENERAL"
        entries = [e for lst in all_lists for e in lst if e.get("key") == name]
        if any(e.get("scope") == "BUILD_TIME" for e in entries):
            # Adding a run-time twin would make rollback (which removes by name) take both away.
            raise errors.InvalidRequest(do.PLATFORM, "apps.update", f"app {target.app}",
                                        f"{name} exists as a BUILD_TIME-only variable; change its scope by hand")
        if not entries:
            envs.append({"key": name, "value": value, "scope": "RUN_TIME", "type": kind})
            added.append(name)
        else:
            for entry in entries:
                entry["value"] = value
                entry["type"] = kind
            changed.append(name)
    updated = api.update_spec(app["id"], spec)
    return SpecChange(app["id"], location, prior, updated.get("spec") or spec, added, changed, created)


def remove_envs(target: Any, location: str, names: list[str], api: AppsApi | None = None, *,
                drop_empty_list: bool = False) -> dict[str, Any]:
    """Remove exactly `names` from the envs at `location`; returns the spec after the update."""
    api = api or AppsApi()
    app = api.find(target.app)
    spec = copy.deepcopy(app.get("spec") or {})
    envs = _env_list(spec, location, target.app)
    envs[:] = [e for e in envs if e.get("key") not in set(names)]
    if drop_empty_list and not envs:
        holder = spec if location == "app" else _pick_component(spec, location, target.app)[1]
        holder.pop("envs", None)
    updated = api.update_spec(app["id"], spec)
    return updated.get("spec") or spec


def masked_spec(spec: Any) -> Any:
    """The spec with every env value and credential-like field replaced by a fingerprint.

    Safe to store; equal specs give equal masked specs, so rollback can be verified exactly.
    """
    if isinstance(spec, dict):
        out: dict[str, Any] = {}
        for key, value in spec.items():
            if key == "envs" and isinstance(value, list):
                out[key] = [
                    {k: (f"fp:{secrets.fingerprint(str(v))}" if k == "value" else v) for k, v in env.items()}
                    for env in value
                ]
            elif any(s in key.lower() for s in _SENSITIVE_KEYS) and not isinstance(value, (bool, int)):
                out[key] = f"fp:{secrets.fingerprint(json.dumps(value, sort_keys=True))}"
            else:
                out[key] = masked_spec(value)
        return out
    if isinstance(spec, list):
        return [masked_spec(v) for v in spec]
    return spec


def spec_fingerprint(spec: dict[str, Any]) -> str:
    return secrets.fingerprint(json.dumps(masked_spec(spec), sort_keys=True))
