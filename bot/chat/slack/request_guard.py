"""What a Slack HTTP request must pass before bolt sees it: size, replay, shape.

    guard = RequestGuard(signing_secret)
    refusal = guard.check(headers, body)        # None: hand the request to bolt
    if refusal: return Response(refusal.body, status_code=refusal.status, ...)

- Size: Slack's own payloads are far below `MAX_BODY` (a slash command's text is at most a few
  KB; a modal submission well under 1 MiB). A bigger body is refused with 413 before it is parsed:
  a 1 MB signed command used to hold a worker for a minute.
- Replays: bolt accepts a correctly signed request for 5 minutes, so the same request resent
  would start a second run. Each accepted request's signature is kept for `REPLAY_WINDOW` and a
  second request with it is answered 200 with nothing done. Slack's own Events API retries
  (`X-Slack-Retry-Num`, same `event_id`) are answered once the same way.
- Shape: a `payload` that is not a JSON object, or an events body that is not one, gets a 400 and
  one log line (the reason and the size, never the body).

Only requests whose signature is valid are remembered or parsed here; anything else goes to bolt
unchanged, which answers 401 as before (so an attacker cannot fill the replay memory or poison it
with a signature it saw).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024          # bytes of any Slack request
MAX_COMMAND_TEXT = 4000         # characters after `/runbook`; Slack's own input is far shorter
REPLAY_WINDOW = 6 * 60.0        # bolt's 5-minute signature window, plus clock skew
MAX_REMEMBERED = 100_000        # signatures kept at most (oldest forgotten first)


@dataclass(frozen=True)
class Refusal:
    status: int
    body: str
    content_type: str = "text/plain"


class RequestGuard:
    def __init__(self, signing_secret: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, headers: Mapping[str, str], body: bytes) -> Refusal | None:
        if len(body) > MAX_BODY:
            return self._refuse(413, f"request body of {len(body)} bytes is over the {MAX_BODY}-byte limit", body)
        try:  # bolt decodes before it verifies, and a non-UTF-8 body made it answer 500
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(400, "body is not UTF-8", body)
        if self.verifier is None or not self._signed(headers, body):
            return None  # bolt answers 401 (or, without a secret, this is not the HTTP mode)
        shape = self._shape(headers, text)
        if shape is not None:
            return shape
        keys = [f"sig:{headers.get('x-slack-signature', '')}"]
        event_id = self._event_id(headers, text)
        if event_id:
            keys.append(f"event:{event_id}")
        if not self._remember(keys):
            log.info("ignored a replayed Slack request (%d bytes)", len(body))
            return Refusal(200, "")
        return None

    # -- pieces ---------------------------------------------------------------------------------

    def _signed(self, headers: Mapping[str, str], body: bytes) -> bool:
        assert self.verifier is not None
        timestamp, signature = headers.get("x-slack-request-timestamp", ""), headers.get("x-slack-signature", "")
        if not timestamp.isdigit() or not signature:
            return False
        return self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature)

    def _shape(self, headers: Mapping[str, str], text: str) -> Refusal | None:
        if headers.get("content-type", "").startswith("application/json"):
            event = _json(text)
            if not isinstance(event, dict):
                return self._refuse(400, "body is not a JSON object", text)
            problem = _payload_problem(event)
            if problem is None and "event" in event and not isinstance(event["event"], dict):
                problem = "event is not an object"
            return self._refuse(400, problem, text) if problem else None
        form = dict(parse_qsl(text, keep_blank_values=True))  # linear in the body's size
        if "payload" in form:
            payload = _json(form["payload"])
            if not isinstance(payload, dict):
                return self._refuse(400, "payload is not a JSON object", text)
            problem = _payload_problem(payload)
            if problem:
                return self._refuse(400, problem, text)
        elif "command" in form and len(form.get("text", "")) > MAX_COMMAND_TEXT:
            log.warning("refused a Slack command of %d characters", len(form["text"]))
            return Refusal(200, json.dumps({"response_type": "ephemeral", "text": (
                f"That command is {len(form['text'])} characters long; the limit is {MAX_COMMAND_TEXT}.")}),
                "application/json")
        return None

    @staticmethod
    def _event_id(headers: Mapping[str, str], text: str) -> str | None:
        if not headers.get("content-type", "").startswith("application/json"):
            return None
        event = _json(text)
        return str(event.get("event_id")) if isinstance(event, dict) and event.get("event_id") else None

    def _remember(self, keys: list[str]) -> bool:
        """True if none of `keys` was seen within the window (and now they are)."""
        now = self.clock()
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - REPLAY_WINDOW
                                  or len(self._seen) > MAX_REMEMBERED):
                self._seen.popitem(last=False)
            if any(key in self._seen for key in keys):
                return False
            for key in keys:
                self._seen[key] = now
            return True

    @staticmethod
    def _refuse(status: int, reason: str, body: bytes | str) -> Refusal:
        log.warning("refused a Slack request: %s (%d bytes)", reason, len(body))
        return Refusal(status, reason)


def _payload_problem(payload: dict) -> str | None:
    """What makes an interactivity payload unreadable to the listeners (None: nothing)."""
    kind = payload.get("type")
    if not isinstance(kind, str):
        return "payload has no type"
    for key in ("user", "team", "channel", "container", "view", "message", "state", "enterprise"):
        if key in payload and not isinstance(payload[key], dict):  # bolt indexes into these
            return f"{kind} payload has a {key} that is not an object"
    if "actions" in payload and not isinstance(payload["actions"], list):
        return f"{kind} payload has actions that are not a list"
    user = payload.get("user")
    if kind in ("block_actions", "view_submission", "view_closed", "shortcut", "message_action") and \
            not (isinstance(user, dict) and isinstance(user.get("id"), str)):
        return f"{kind} payload has no user id"
    if kind == "block_actions":
        actions = payload.get("actions")
        if not (isinstance(actions, list) and actions and
                all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)):
            return "block_actions payload has no readable actions"
    if kind in ("view_submission", "view_closed"):
        view = payload.get("view")
        if not (isinstance(view, dict) and isinstance(view.get("callback_id", ""), str)):
            return f"{kind} payload has no readable view"
        if not isinstance(view.get("state", {}), dict) or not isinstance(view.get("private_metadata", ""), str):
            return f"{kind} payload has an unreadable view state"
    return None


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
