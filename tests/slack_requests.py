"""Build Slack requests as Slack sends them: form bodies, `payload=` JSON, signed with the secret."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import requests
from slack_sdk.signature import SignatureVerifier

from tests.fixtures.slack import SIGNING_SECRET


_TRIGGERS = itertools.count(1)


def trigger_id(kind: int, user: str) -> str:
    """Unique per invocation, as Slack's are (a redelivery repeats it; a new click never does)."""
    return f"{time.time():.0f}.{next(_TRIGGERS)}.{kind}.{user}"


def command_body(text: str, *, user: str, channel: str = "C0OPS", response_url: str = "") -> str:
    return urlencode({
        "token": "legacy-verification-token", "team_id": "T0FAKE", "team_domain": "fake", "channel_id": channel,
        "channel_name": "ops", "user_id": user, "user_name": user.lower(), "command": "/runbook", "text": text,
        "api_app_id": "A111", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger_id(1, user),
    })


def command_payload(text: str, *, user: str, channel: str = "C0OPS", response_url: str = "") -> dict[str, Any]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(command_body(text, user=user, channel=channel, response_url=response_url)))


def click_payload(action: dict[str, Any], *, user: str, channel: str = "C0OPS", message_ts: str = "1.0",
                  response_url: str = "") -> dict[str, Any]:
    return {
        "type": "block_actions", "api_app_id": "A111", "token": "legacy-verification-token",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "ops"}, "trigger_id": trigger_id(2, user),
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action["action_id"], "block_id": action.get("block_id", "b"),
                     "value": action.get("value", ""), "text": action.get("text", {"type": "plain_text", "text": "x"}),
                     "action_ts": f"{time.time():.6f}"}],
    }


def view_payload(view: dict[str, Any], typed: str, *, user: str) -> dict[str, Any]:
    return {
        "type": "view_submission", "api_app_id": "A111", "token": "legacy-verification-token",
        "team": {"id": "T0FAKE", "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0FAKE"},
        "trigger_id": trigger_id(3, user),
        "view": {**view, "id": "V0001", "team_id": "T0FAKE", "hash": "h",
                 "state": {"values": {"confirm_input": {"confirm_value": {"type": "plain_text_input", "value": typed}}}}},
    }


def interactive_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
    }


def post(url: str, body: str, *, headers: dict[str, str] | None = None, session: Any = None, **sign: Any):
    headers = {**signed_headers(body, **sign), **(headers or {})}
    return (session or requests).post(url, data=body.encode(), headers=headers, timeout=10)


def submission_payload(view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str,
                       view_id: str = "V0001") -> dict[str, Any]:
    """A view_submission of `view` with `values` as Slack sends them: {block_id: {action_id: element state}}."""
    return {
        "type": "view_submission", "api_app_id": "A111", "token": "legacy-verification-token",
        "team": {"id": "T0FAKE", "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0FAKE"},
        "trigger_id": trigger_id(3, user),
        "view": {**view, "id": view_id, "team_id": "T0FAKE", "hash": "h", "state": {"values": values}},
    }


def view_action_payload(view: dict[str, Any], action: dict[str, Any], *, user: str,
                        view_id: str = "V0001") -> dict[str, Any]:
    """A block_actions from inside a modal (a select changed): no channel, the view instead."""
    return {
        "type": "block_actions", "api_app_id": "A111", "token": "legacy-verification-token",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"}, "container": {"type": "view", "view_id": view_id},
        "trigger_id": trigger_id(4, user),
        "view": {**view, "id": view_id, "team_id": "T0FAKE", "hash": "h", "state": {"values": {}}},
        "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
    }


def event_body(event: dict[str, Any]) -> str:
    """An Events API delivery (JSON body), e.g. app_home_opened."""
    return json.dumps({"token": "legacy-verification-token", "team_id": "T0FAKE", "api_app_id": "A111",
                       "event": event, "type": "event_callback", "event_id": f"Ev{time.time_ns()}",
                       "event_time": int(time.time())})


def event_headers(body: str) -> dict[str, str]:
    return {**signed_headers(body), "Content-Type": "application/json"}
