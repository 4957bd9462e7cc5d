"""Typed platform errors: every adapter maps its SDK's failures onto these, and nothing else.

A step catches the narrowest of these it has a plan for (usually :class:`NotFound`) and lets the
rest propagate; the engine records them with the platform, the call and the resource, so an
operator reads *what* failed and *where* instead of a bare traceback:

    >>> raise NotFound("digitalocean", "apps.get", "app api-production", "no such app")
    Traceback (most recent call last):
    bot.platforms.errors.NotFound: digitalocean apps.get (app api-production): not found: no such app

`retryable` tells the engine's retry policy whether trying again can help (throttling, an outage);
a wrong token or a missing object never gets better by waiting.
"""

from __future__ import annotations


class PlatformError(Exception):
    """A call to a platform failed. Carries the platform, the call and the resource it named."""

    kind = "error"
    retryable = False

    def __init__(self, platform: str, call: str, resource: str = "", message: str = "") -> None:
        self.platform = platform
        self.call = call
        self.resource = resource
        self.message = message
        where = f" ({resource})" if resource else ""
        detail = f": {message}" if message else ""
        super().__init__(f"{platform} {call}{where}: {self.kind}{detail}")

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "platform": self.platform,
            "call": self.call,
            "resource": self.resource,
            "message": self.message,
        }


class NotFound(PlatformError):
    kind = "not found"


class Unauthorized(PlatformError):
    kind = "unauthorized"


class Throttled(PlatformError):
    kind = "throttled"
    retryable = True


class Unavailable(PlatformError):
    kind = "unavailable"
    retryable = True


class InvalidRequest(PlatformError):
    """The platform refused the request as malformed (HTTP 400/422): a bug or a bad runbook input."""

    kind = "invalid request"


class Conflict(PlatformError):
    kind = "conflict"


class MissingCredentials(PlatformError):
    """No token/credentials in the environment for this platform; says which variable to set."""

    kind = "missing credentials"


def from_http_status(status: int, platform: str, call: str, resource: str, message: str = "") -> PlatformError:
    """Map an HTTP status to the typed error (used by the plain-HTTP adapters)."""
    if status == 404:
        return NotFound(platform, call, resource, message)
    if status in (401, 403):
        return Unauthorized(platform, call, resource, message)
    if status == 429:
        return Throttled(platform, call, resource, message)
    if status == 409:
        return Conflict(platform, call, resource, message)
    if status in (400, 422):
        return InvalidRequest(platform, call, resource, message)
    if status >= 500:
        return Unavailable(platform, call, resource, message)
    return PlatformError(platform, call, resource, f"HTTP {status} {message}".strip())
