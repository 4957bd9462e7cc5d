"""The hostile Slack corpus: every body in tests/hostile/slack, signed as Slack signs, into the real
bolt app behind uvicorn. Each answers with its expected status (never a 500), within the 10 s
request timeout (a hang guard), with no traceback in the log, and starts or decides nothing.

A case file is JSON: `form` (a urlencoded body; `RESPONSE_URL` is replaced with the fake's), `json`
(an Events API body, sent as is) or `raw_hex` (bytes); `status`; optionally `private` (text the
person is told privately, through the response URL) or `answer` (text in the HTTP answer).

Also here: replays (the same signed request twice), Slack's own retries, the size cap, a 1 MB
command, and a property test that signs generated bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.slack.app import build
from bot.chat.slack.request_guard import MAX_BODY, MAX_COMMAND_TEXT
from bot.chat.slack.server import EVENTS_PATH, HttpServer
from bot.chat.slack.settings import load
from tests.fixtures.slack import SIGNING_SECRET, wait_for
from tests.slack_requests import command_body, signed_headers

CORPUS = Path(__file__).parent / "slack"
HANG_GUARD = 10


@pytest.fixture
def served(slack_env, demo_runbooks, caplog):
    fake = slack_env
    fake.add_group("platform-oncall", ["U0ALICE", "U0BOB", "U0CAROL"])
    bot = build(load(http=True))
    server = HttpServer(bot).start()
    caplog.set_level(logging.INFO)
    yield bot, server, fake
    server.stop()
    bot.close()


def send(url: str, body: bytes, content_type: str = "application/x-www-form-urlencoded",
         headers: dict[str, str] | None = None) -> requests.Response:
    ts = str(int(time.time()))
    signed = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
              # signed over the raw bytes (slack_sdk's helper only signs text), as Slack would
              "X-Slack-Signature": "v0=" + hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body,
                                                    hashlib.sha256).hexdigest()}
    return requests.post(url, data=body, headers={**signed, **(headers or {})}, timeout=HANG_GUARD)


def body_of(case: dict, response_url: str) -> tuple[bytes, str]:
    if "form" in case:
        form = {k: v.replace("RESPONSE_URL", response_url) for k, v in case["form"].items()}
        return urlencode(form).encode(), "application/x-www-form-urlencoded"
    if "json" in case:
        return case["json"].encode(), "application/json"
    return bytes.fromhex(case["raw_hex"]), "application/x-www-form-urlencoded"


def nothing_happened(bot, fake) -> None:
    assert bot.store.list_runs() == []
    assert fake.calls_to("chat.postMessage") == []


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem)
def test_hostile_slack_request_gets_a_clean_answer(served, path, caplog):
    bot, server, fake = served
    case = json.loads(path.read_text())
    body, content_type = body_of(case, fake.response_url())
    r = send(server.url + EVENTS_PATH, body, content_type)
    assert r.status_code == case["status"], r.text
    if "answer" in case:
        assert case["answer"] in r.text
    if "private" in case:
        said = wait_for(lambda: fake.calls_to("response_url"), message="a private answer")
        assert case["private"] in json.dumps([c.payload for c in said]).lower()
    time.sleep(0.2)  # time for a wrongly accepted request to do harm
    bot.work.shutdown(wait=True)
    nothing_happened(bot, fake)
    assert "Traceback" not in caplog.text and "Exception in ASGI" not in caplog.text
    assert (body.decode("latin-1")[:200] not in caplog.text) or len(body) < 20  # logged without the body


def test_a_replayed_command_is_a_no_op(served):
    bot, server, fake = served
    body = command_body("run demo env=staging", user="U0ALICE", response_url=fake.response_url()).encode()
    headers = signed_headers(body.decode())
    first = requests.post(server.url + EVENTS_PATH, data=body, headers=headers, timeout=HANG_GUARD)
    again = requests.post(server.url + EVENTS_PATH, data=body, headers=headers, timeout=HANG_GUARD)
    assert first.status_code == again.status_code == 200
    wait_for(lambda: bot.store.list_runs(), message="the first run")
    time.sleep(0.5)
    assert len(bot.store.list_runs()) == 1


def test_a_slack_retry_of_an_event_is_answered_once(served, caplog):
    bot, server, fake = served
    event = json.dumps({"type": "event_callback", "event_id": "Ev123", "team_id": "T0FAKE", "api_app_id": "A111",
                        "event": {"type": "app_mention", "user": "U0ALICE", "text": "hi", "channel": "C0OPS",
                                  "ts": "1.0"}}).encode()
    first = send(server.url + EVENTS_PATH, event, "application/json")
    time.sleep(1.1)  # a retry is signed again, at a later second
    retry = send(server.url + EVENTS_PATH, event, "application/json", headers={"X-Slack-Retry-Num": "1"})
    assert first.status_code in (200, 404) and retry.status_code == 200  # 404: no listener for the event
    assert caplog.text.count("ignored a replayed Slack request") == 1


def test_bodies_over_the_cap_get_413_and_a_long_command_a_private_line(served):
    bot, server, fake = served
    huge = command_body("run demo " + "x" * (MAX_BODY + 10), user="U0ALICE").encode()
    assert send(server.url + EVENTS_PATH, huge).status_code == 413
    long = command_body("run demo " + "x" * 1_000_000, user="U0ALICE").encode()  # 1 MB, under the cap
    r = send(server.url + EVENTS_PATH, long)
    assert r.status_code == 200 and f"the limit is {MAX_COMMAND_TEXT}" in r.json()["text"]
    nothing_happened(bot, fake)


payloads = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["type", "user", "actions", "view", "private_metadata", "value", "id", "callback_id", "trigger_id"]),
        inner, max_size=5),
    max_leaves=12,
)
shaped = st.fixed_dictionaries({"type": st.sampled_from(["block_actions", "view_submission", "shortcut", "x"]),
                                "user": st.fixed_dictionaries({"id": st.text(max_size=8)}) | payloads,
                                "actions": payloads, "view": payloads})
bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: (b, "application/x-www-form-urlencoded")),
    (payloads | shaped).map(lambda p: (urlencode({"payload": json.dumps(p)}).encode(),
                                       "application/x-www-form-urlencoded")),
    payloads.map(lambda p: (json.dumps(p).encode(), "application/json")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(case=bodies)
def test_any_signed_body_gets_a_4xx_or_200_never_a_500(served, case):
    bot, server, fake = served
    body, content_type = case
    r = send(server.url + EVENTS_PATH, body, content_type)
    assert r.status_code in (200, 400, 404, 413), (r.status_code, r.text[:200])
    assert bot.store.list_runs() == []
