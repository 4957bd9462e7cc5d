"""Who may approve: resolve approver specs against Slack.

    directory = SlackDirectory(client, ttl=60)
    directory.matches("U123", "U123")            # a user id: that user
    directory.matches("U123", "@platform-oncall") # a user group handle: its members (usergroups.users.list)
    directory.matches("U123", "ana@example.com")  # an email: users.lookupByEmail
    directory.matches("U123", "*")                # anyone

Group membership and email lookups are cached for `ttl` seconds: an approval burst costs one call,
and a person removed from the on-call group loses the right within a minute. A Slack failure is
not a "no": it raises `DirectoryUnavailable`, so the clicker is told to try again instead of being
told they are not allowed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class DirectoryUnavailable(Exception):
    """Slack could not answer who is in a group or who owns an email; the check is undecided."""


class SlackDirectory:
    def __init__(self, client: WebClient, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def matches(self, user: str, spec: str) -> bool:
        spec = str(spec).strip()
        if spec == "*":
            return True
        if USER_ID.match(spec):
            return user == spec
        if spec.startswith("@"):
            return user in self.group_members(spec[1:])
        if EMAIL.match(spec):
            return self.user_for_email(spec) == user
        # A runbook bug (a user *name*, say): nobody matches it, and the refusal names the spec.
        log.warning("approver %r is not a user id (U...), a @group handle, an email or *; it matches nobody", spec)
        return False

    # -- lookups (cached) --------------------------------------------------------------------------

    def _cached(self, key: tuple[str, str], fetch: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        value = fetch()
        with self._lock:
            self._cache[key] = (self.clock(), value)
        return value

    @staticmethod
    def _ask(what: str, method: Any, **kwargs: Any) -> Any:
        """One Web API call; an outage becomes DirectoryUnavailable ("try again"), never "not allowed"."""
        try:
            return method(**kwargs)
        except (URLError, OSError) as exc:
            raise DirectoryUnavailable(f"could not reach Slack to {what}: {exc}") from exc
        except SlackApiError as exc:
            raise DirectoryUnavailable(f"could not {what}: {exc.response.get('error')}") from exc

    def group_id(self, handle: str) -> str | None:
        def fetch() -> dict[str, str]:
            response = self._ask("list user groups", self.client.usergroups_list, include_disabled=False)
            return {g["handle"]: g["id"] for g in response.get("usergroups", []) if g.get("handle")}

        return self._cached(("groups", ""), fetch).get(handle)

    def group_members(self, handle: str) -> frozenset[str]:
        group = self.group_id(handle)
        if group is None:
            return frozenset()

        def fetch() -> frozenset[str]:
            response = self._ask(f"list members of @{handle}", self.client.usergroups_users_list, usergroup=group)
            return frozenset(response.get("users", []))

        return self._cached(("members", group), fetch)

    def user_for_email(self, email: str) -> str | None:
        def fetch() -> str | None:
            try:
                response = self.client.users_lookupByEmail(email=email)
            except (URLError, OSError) as exc:
                raise DirectoryUnavailable(f"could not reach Slack to look up {email}: {exc}") from exc
            except SlackApiError as exc:
                if exc.response.get("error") == "users_not_found":
                    return None
                raise DirectoryUnavailable(
                    f"could not look up {email}: {exc.response.get('error')}") from exc
            return response["user"]["id"]

        return self._cached(("email", email.lower()), fetch)
