"""Heroku Platform API over plain HTTP (version 3), token from `HEROKU_API_KEY`.

    from bot.platforms import heroku
    api = heroku.Api()                       # or Api(base_url=..., token=...) in tests
    vars = api.get(f"/apps/{app}/config-vars", resource=f"app {app}")

`HEROKU_API_URL` overrides the base URL (a local server in tests). Errors map to
`bot.platforms.errors` with the call and the resource named.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bot import config, secrets
from bot.platforms import errors

PLATFORM = "heroku"
DEFAULT_URL = "https://api.heroku.com"


class Api:
    def __init__(self, *, base_url: str | None = None, token: str | None = None, timeout: float = 30) -> None:
        self.base_url = (base_url or config.get("HEROKU_API_URL", DEFAULT_URL)).rstrip("/")
        token = token or config.get("HEROKU_API_KEY")
        if not token:
            raise errors.MissingCredentials(PLATFORM, "client", self.base_url, "set HEROKU_API_KEY")
        secrets.register(token)
        self.timeout = timeout
        self.session = requests.Session()
        retry = Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504),
                      allowed_methods=frozenset({"GET", "HEAD"}), respect_retry_after_header=True)
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.headers.update({
            "Accept": "application/vnd.heroku+json; version=3",
            "Authorization": f"Bearer {token}",
            "User-Agent": "runbook-bot",
        })

    def request(self, method: str, path: str, *, resource: str, json: Any = None) -> Any:
        call = f"{method} {path}"
        try:
            response = self.session.request(method, self.base_url + path, json=json, timeout=self.timeout)
        except requests.RequestException as exc:
            raise errors.Unavailable(PLATFORM, call, resource, str(exc)) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = f"{body.get('id', '')}: {body.get('message', '')}".strip(": ")
            except ValueError:
                message = response.text[:200]
            raise errors.from_http_status(response.status_code, PLATFORM, call, resource, message)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, *, resource: str) -> Any:
        return self.request("GET", path, resource=resource)

    def patch(self, path: str, body: Any, *, resource: str) -> Any:
        return self.request("PATCH", path, resource=resource, json=body)
