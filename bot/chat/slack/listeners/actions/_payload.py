"""Reading a block_actions payload: who clicked, where, and which run and step the button names."""

from __future__ import annotations

import json
from typing import Any


def clicked(body: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    try:  # a button's value is ours, but the request carrying it may not be
        value = json.loads(action.get("value") or "{}")
    except (ValueError, TypeError):
        value = {}
    if not isinstance(value, dict):
        value = {}
    return {
        "user": body["user"]["id"],
        "channel": (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id"),
        "response_url": body.get("response_url"),
        "run_id": value.get("run"),
        "step_key": value.get("step"),
        "confirm": bool(value.get("confirm")),
        "choice": value.get("action"),
        "digest": value.get("digest"),  # the plan the clicker saw (Runner.approve refuses a re-planned one)
    }
