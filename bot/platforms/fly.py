"""Fly.io Machines API: secret names and digests, and the plain env of each Machine's config.

    from bot.platforms import fly
    env = fly.read_env(FlyTarget(app="api"))   # secrets: present, value unknown; config.env: plain

Calls `GET /v1/apps/{app}/secrets` (`{"secrets": [{"name", "digest"}]}`; plaintext is only
available from inside the app's Machines, so secrets are compared by presence) and
`GET /v1/apps/{app}/machines` (each Machine's `config.env`). Settings: `FLY_API_TOKEN` (required),
`FLY_API_URL` (default `https://api.machines.dev`; a local server in tests). Errors map to
`bot.platforms.errors`, naming the call and the app.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bot import config, secrets
from bot.platforms import errors
from bot.platforms.envvalue import EnvValue, SourceEnv

PLATFORM = "fly"
DEFAULT_URL = "https://api.machines.dev"


class Api:
    def __init__(self, *, base_url: str | None = None, token: str | None = None, timeout: float = 30) -> None:
        self.base_url = (base_url or config.get("FLY_API_URL", DEFAULT_URL)).rstrip("/")
        token = token or config.get("FLY_API_TOKEN")
        if not token:
            raise errors.MissingCredentials(PLATFORM, "client", self.base_url, "set FLY_API_TOKEN")
        secrets.register(token)
        self.timeout = timeout
        self.session = requests.Session()
        retry = Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504),
                      allowed_methods=frozenset({"GET"}), respect_retry_after_header=True)
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "runbook-bot"})

    def get(self, path: str, *, resource: str) -> Any:
        call = f"GET {path}"
        try:
            response = self.session.get(self.base_url + path, timeout=self.timeout)
        except requests.exceptions.RetryError as exc:
            raise errors.Throttled(PLATFORM, call, resource, "still throttled after retries") from exc
        except requests.RequestException as exc:
            raise errors.Unavailable(PLATFORM, call, resource, str(exc)) from exc
        if response.status_code >= 400:
            try:
                message = str(response.json().get("error", ""))
            except ValueError:
                message = response.text[:200]
            raise errors.from_http_status(response.status_code, PLATFORM, call, resource, message)
        try:
            return response.json()
        except ValueError:
            raise errors.PlatformError(PLATFORM, call, resource, "the answer is not JSON") from None


def read_env(target: Any, api: Api | None = None) -> SourceEnv:
    api = api or Api()
    resource = f"app {target.app}"
    env = SourceEnv(platform=PLATFORM, resource=resource)
    body = api.get(f"/v1/apps/{target.app}/secrets", resource=resource)
    if not isinstance(body, dict) or not isinstance(body.get("secrets"), list):
        raise errors.PlatformError(PLATFORM, "GET secrets", resource, "answer has no 'secrets' list")
    machines = api.get(f"/v1/apps/{target.app}/machines", resource=resource)
    if not isinstance(machines, list):
        raise errors.PlatformError(PLATFORM, "GET machines", resource, "answer is not a list of machines")
    for machine in machines:
        if machine.get("state") == "destroyed":
            continue
        mid = machine.get("id", "?")
        cfg = machine.get("config") or {}
        secrets.register_many(str(v) for v in (cfg.get("env") or {}).values() if v is not None)
        for name, value in (cfg.get("env") or {}).items():
            value = "" if value is None else str(value)
            candidate = EnvValue(name, value, origin=f"machine {mid} config.env")
            earlier = env.values.get(name)
            if earlier is not None and earlier.fingerprint() != candidate.fingerprint():
                env.notes.append(f"{name} differs between machines ({earlier.origin} / {candidate.origin})")
            env.values.setdefault(name, candidate)
        init = cfg.get("init") or {}
        command = " ".join(str(p) for p in (init.get("entrypoint") or []) + (init.get("cmd") or []))
        if command and command not in env.commands:
            env.commands.append(command)
    for item in body["secrets"]:
        name = item["name"]
        # Fly injects secrets over config.env of the same name.
        env.values[name] = EnvValue(name, None, secret=True, origin="fly secret (digest only)")
    return env


class FlyEnv:
    """`EnvSource` of a Fly app (secrets are compared by presence: their values cannot be read)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def read(self) -> SourceEnv:
        return read_env(self.target)
