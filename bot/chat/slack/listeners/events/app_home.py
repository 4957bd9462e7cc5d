"""`app_home_opened`: publish this viewer's Home (runs, approvals waiting for them, watches).

Events are acked by bolt; the publish is queued on the Home publisher's own thread."""

from __future__ import annotations

from typing import Any


def home_opened(event: dict[str, Any], context: Any) -> None:
    if event.get("tab", "home") != "home":
        return
    home = getattr(context["service"], "home", None)
    if home is not None:
        home.opened(event["user"])
