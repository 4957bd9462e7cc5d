"""Heroku Postgres: the app's `DATABASE_URL` config var (registered as a secret the moment it is read).

    url = database.database_url("api-production")
"""

from __future__ import annotations

from bot import secrets
from bot.platforms import errors
from bot.platforms.heroku import PLATFORM, Api


def database_url(app: str, *, var: str = "DATABASE_URL", api: Api | None = None) -> str:
    api = api or Api()
    values = api.get(f"/apps/{app}/config-vars", resource=f"app {app}") or {}
    secrets.register(*[str(v) for v in values.values() if v])
    url = values.get(var)
    if not url:
        raise errors.NotFound(PLATFORM, f"GET /apps/{app}/config-vars", f"app {app}",
                              f"config var {var} is not set (is Heroku Postgres attached?)")
    return str(url)
