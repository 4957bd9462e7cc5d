"""DigitalOcean through pydo: one client, azure-core's retry policy, and every response checked.

    from bot.platforms import digitalocean as do
    app = do.call("apps.get", f"app {app_id}", do.client().apps.get, app_id, expect="app")["app"]

pydo answers many 404s with a *body* (`{"id": "not_found", "message": ...}`) instead of raising
(about 560 operations accept 404 as success). `call` therefore checks that the key the caller
expects is in the response and raises `NotFound` naming the resource when it is not: the seed's
"bare except that hid the 404", made impossible at the one door every DigitalOcean call goes through.

Settings: `DIGITALOCEAN_TOKEN` (required for real calls), `DIGITALOCEAN_API_URL` (endpoint override:
Prism or a fake in tests). azure-core refuses to send a bearer token over plain http, so for an
http:// endpoint the token goes in a plain headers policy instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import HeadersPolicy, RetryPolicy

from bot import config, secrets
from bot.platforms import errors

PLATFORM = "digitalocean"
DEFAULT_ENDPOINT = "https://api.digitalocean.com"

_clients: dict[tuple[str, str, int], Any] = {}
_lock = threading.Lock()


def client(*, endpoint: str | None = None, token: str | None = None, retry_total: int = 5) -> Any:
    """A cached `pydo.Client` for the endpoint and token (from the environment by default)."""
    import pydo

    endpoint = endpoint or config.get("DIGITALOCEAN_API_URL", DEFAULT_ENDPOINT)
    token = token or config.get("DIGITALOCEAN_TOKEN")
    if not token:
        raise errors.MissingCredentials(PLATFORM, "client", endpoint, "set DIGITALOCEAN_TOKEN")
    secrets.register(token)
    key = (endpoint, token, retry_total)
    with _lock:
        if key in _clients:
            return _clients[key]
    # azure-core's RetryPolicy: exponential backoff honouring Retry-After on 408/429/5xx; kept
    # short so a throttled plan answers within a Slack-friendly time and the engine decides the rest.
    retry = RetryPolicy(retry_total=retry_total, retry_backoff_factor=0.5, retry_backoff_max=20)
    kwargs: dict[str, Any] = {"endpoint": endpoint, "timeout": 60, "retry_policy": retry}
    if endpoint.startswith("http://"):
        kwargs["authentication_policy"] = HeadersPolicy({"Authorization": f"Bearer {token}"})
    made = pydo.Client(token, **kwargs)
    with _lock:
        _clients.setdefault(key, made)
        return _clients[key]


def call(name: str, resource: str, fn: Callable[..., Any], *args: Any, expect: str | None = None,
         **kwargs: Any) -> Any:
    """Call a pydo operation; map its errors; insist on the `expect`ed top-level key.

    `expect=None` is for operations that return nothing (204).
    """
    try:
        response = fn(*args, **kwargs)
    except ResourceNotFoundError as exc:
        raise errors.NotFound(PLATFORM, name, resource, _message(exc)) from exc
    except ClientAuthenticationError as exc:
        raise errors.Unauthorized(PLATFORM, name, resource, _message(exc)) from exc
    except ResourceExistsError as exc:
        raise errors.Conflict(PLATFORM, name, resource, _message(exc)) from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        raise errors.from_http_status(status or 500, PLATFORM, name, resource, _message(exc)) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise errors.Unavailable(PLATFORM, name, resource, str(exc)) from exc
    return check(name, resource, response, expect)


def check(name: str, resource: str, response: Any, expect: str | None) -> Any:
    """Raise the typed error an error body stands for, or when `expect` is missing."""
    if isinstance(response, dict) and "id" in response and "message" in response and (
        expect is None or expect not in response
    ):
        error_id = str(response.get("id"))
        message = str(response.get("message"))
        status = {"not_found": 404, "unauthorized": 401, "forbidden": 403, "too_many_requests": 429,
                  "conflict": 409, "unprocessable_entity": 422, "bad_request": 400}.get(error_id, 500)
        raise errors.from_http_status(status, PLATFORM, name, resource, f"{error_id}: {message}")
    if expect is not None and (not isinstance(response, dict) or expect not in response):
        got = sorted(response) if isinstance(response, dict) else type(response).__name__
        raise errors.PlatformError(PLATFORM, name, resource, f"response has no {expect!r} (got {got})")
    return response


def _message(exc: HttpResponseError) -> str:
    try:
        body = exc.response.json() if exc.response is not None else None
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"{body.get('id', '')}: {body['message']}".strip(": ")
    return exc.reason or str(exc).splitlines()[0]


def _reset_for_tests() -> None:
    with _lock:
        _clients.clear()
