"""The launcher: `/runbook run` alone and the global shortcut open a modal generated from the runbook's
typed params; values are checked inline by the loader's rules; submitting plans every step (a dry
run) and Start starts the run with typed params. Signed HTTP into the real bolt app (uvicorn),
the real engine and step kind, and the fake Slack Web API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slack_sdk.models.views import View

from bot.chat.slack import launcher
from bot.chat.slack.app import build
from bot.chat.slack.server import EVENTS_PATH, HttpServer
from bot.chat.slack.settings import load
from tests.fixtures.slack import wait_for
from tests.slack_requests import command_body, interactive_body, post, submission_payload, view_action_payload

ROOT = Path(__file__).resolve().parent.parent

TYPED = """\
name: typed
description: Every param type, for the launcher
params:
  env: {type: choice, choices: [staging, production], default: staging, description: Which environment}
  replicas: {type: int, description: How many tasks the new service runs}
  drain: {type: bool, default: false, description: Drain connections first}
  note: {type: string, description: A line for the audit log}
approvals:
  default: {approvers: ["@platform-oncall"], min: 1, allow_self: false}
steps:
  - id: mark
    kind: test.mark
    with: {path: "%(path)s", text: "{{ params.env }}-{{ params.replicas }}-{{ params.drain }}", note: "{{ params.note }}"}
"""


@pytest.fixture
def served(slack_env, demo_runbooks):
    fake = slack_env
    fake.add_group("platform-oncall", ["U0ALICE", "U0BOB"])
    folder = demo_runbooks.parent / "runbooks"
    (folder / "typed.yaml").write_text(TYPED % {"path": demo_runbooks}, encoding="utf-8")
    bot = build(load(http=True))
    server = HttpServer(bot).start()
    yield bot, server, fake, demo_runbooks
    server.stop()
    bot.close()


def _view(call) -> dict:
    view = call.payload["view"]
    return json.loads(view) if isinstance(view, str) else view


def _element(view: dict, block_id: str) -> dict:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return block.get("element") or block.get("accessory")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "runbooks").glob("*.yaml")))
def test_the_launcher_of_every_shipped_runbook_is_a_valid_modal_generated_from_its_params(name):
    choices = launcher.catalogue(ROOT / "runbooks")
    model = choices[name].model
    assert model is not None, choices[name].error
    view = launcher.form_view(choices, selected=name, channel=None)
    View(**view).validate_json()  # slack_sdk's models: lengths, counts, element types
    for pname, param in model.params.items():
        element = _element(view, f"param:{pname}")
        assert element["type"] == launcher.field_kind(param)
        if param.type == "choice":
            assert [o["value"] for o in element["options"]] == param.choices
        block = next(b for b in view["blocks"] if b.get("block_id") == f"param:{pname}")
        if param.description:
            assert block["hint"]["text"] == param.description
        assert block["optional"] == (not param.is_required)
    # the runbook select lists every runbook with its description
    select = _element(view, "launch_runbook")
    assert {o["value"] for o in select["options"]} == set(choices)
    assert select["initial_option"]["value"] == name


def test_run_alone_opens_the_launcher_and_a_submitted_form_starts_a_run_with_typed_params(served):
    bot, server, fake, marks = served
    url = server.url + EVENTS_PATH

    r = post(url, command_body("run", user="U0ALICE", channel="C0OPS", response_url=fake.response_url()))
    assert r.status_code == 200
    opened = _view(wait_for(lambda: fake.calls_to("views.open"), message="launcher")[0])
    View(**opened).validate_json()
    assert opened["callback_id"] == "launch_form" and "submit" not in opened  # nothing picked yet

    # picking a runbook re-renders the form with its params
    pick = {"type": "static_select", "action_id": "launch_pick_runbook", "block_id": "launch_runbook",
            "selected_option": {"text": {"type": "plain_text", "text": "typed"}, "value": "typed"}}
    post(url, interactive_body(view_action_payload(opened, pick, user="U0ALICE")))
    form = _view(wait_for(lambda: fake.calls_to("views.update"), message="form")[0])
    View(**form).validate_json()
    kinds = {b["block_id"]: b["element"]["type"] for b in form["blocks"] if b["type"] == "input"}
    assert kinds == {"param:env": "static_select", "param:replicas": "number_input", "param:drain": "checkboxes",
                     "param:note": "plain_text_input"}  # the thread goes to the command's channel: no picker

    values = {
        "param:env": {"value": {"type": "static_select", "selected_option": {"value": "production"}}},
        "param:replicas": {"value": {"type": "number_input", "value": "four"}},
        "param:drain": {"value": {"type": "checkboxes", "selected_options": [{"value": "true"}]}},
        "param:note": {"value": {"type": "plain_text_input", "value": "go"}},
    }
    # an invalid value is refused inline, under its input, and nothing starts
    bad = post(url, interactive_body(submission_payload(form, values, user="U0ALICE")))
    assert bad.json() == {"response_action": "errors",
                          "errors": {"param:replicas": "replicas: expected an integer, got 'four'"}}
    missing = dict(values, **{"param:replicas": {"value": {"type": "number_input", "value": None}}})
    assert post(url, interactive_body(submission_payload(form, missing, user="U0ALICE"))).json()["errors"] == \
        {"param:replicas": "replicas is required (int)"}
    assert bot.store.list_runs() == []

    # a valid form: the modal turns into "planning", then shows every step's plan with Start
    values["param:replicas"] = {"value": {"type": "number_input", "value": "4"}}
    answer = post(url, interactive_body(submission_payload(form, values, user="U0ALICE"))).json()
    assert answer["response_action"] == "update" and "Planning every step" in json.dumps(answer["view"])
    ready = wait_for(lambda: [v for v in map(_view, fake.calls_to("views.update")) if "submit" in v
                              and v["callback_id"] == "launch_plan"], message="plan screen")[-1]
    View(**ready).validate_json()
    assert ready["submit"]["text"] == "Start" and ready["close"]["text"] == "Cancel"
    shown = json.dumps(ready["blocks"])
    assert "append 'production-4-True' to marks.txt go" in shown and "needs approval" in shown
    preview = bot.store.list_runs()[0]
    assert preview["dry_run"] and preview["params"] == {"env": "production", "replicas": 4, "drain": True,
                                                        "note": "go"}
    assert not marks.exists()  # planning changed nothing, and the dry run posted nothing in a channel
    assert fake.calls_to("chat.postMessage") == []

    # Start: the real run, with the typed params, in the command's channel
    started = post(url, interactive_body(submission_payload(ready, {}, user="U0ALICE"))).json()
    assert started["response_action"] == "update" and "Started run" in json.dumps(started["view"])
    run = next(r for r in bot.store.list_runs() if not r["dry_run"])
    assert run["params"] == {"env": "production", "replicas": 4, "drain": True, "note": "go"}
    assert run["started_by"] == "U0ALICE" and run["chat"]["channel"] == "C0OPS"
    wait_for(lambda: bot.store.get_step(run["id"], "mark")["state"] == "awaiting_approval", message="asks")
    # the preview's dry run is in the audit, not on anyone's App Home
    assert [item["run"].id for item in bot.home.rows("U0ALICE")["runs"]] == [run["id"]]


def test_the_global_shortcut_asks_for_a_channel_and_a_locked_environment_is_refused_in_the_modal(served):
    bot, server, fake, marks = served
    url = server.url + EVENTS_PATH
    shortcut = {"type": "shortcut", "callback_id": "runbook_launch", "trigger_id": "1.5.U0BOB",
                "user": {"id": "U0BOB", "username": "u0bob", "team_id": "T0FAKE"}, "team": {"id": "T0FAKE"},
                "api_app_id": "A111", "token": "legacy-verification-token", "action_ts": "1.0"}
    assert post(url, interactive_body(shortcut)).status_code == 200
    opened = _view(wait_for(lambda: fake.calls_to("views.open"), message="launcher")[0])
    assert json.loads(opened["private_metadata"])["channel"] is None
    pick = {"type": "static_select", "action_id": "launch_pick_runbook", "block_id": "launch_runbook",
            "selected_option": {"text": {"type": "plain_text", "text": "demo"}, "value": "demo"}}
    post(url, interactive_body(view_action_payload(opened, pick, user="U0BOB")))
    form = _view(wait_for(lambda: fake.calls_to("views.update"), message="form")[0])
    assert _element(form, "launch_channel")["type"] == "conversations_select"
    values = {"param:env": {"value": {"type": "static_select", "selected_option": {"value": "staging"}}},
              "launch_channel": {"value": {"type": "conversations_select", "selected_conversation": "C0NEW"}}}
    assert post(url, interactive_body(submission_payload(form, values, user="U0BOB"))).json()["response_action"] \
        == "update"
    ready = wait_for(lambda: [v for v in map(_view, fake.calls_to("views.update")) if "submit" in v
                              and v["callback_id"] == "launch_plan"], message="plan screen")[-1]
    assert "<#C0NEW>" in json.dumps(ready["blocks"])  # the picked channel gets the thread
    choices = launcher.catalogue(bot.runner.runbooks_dir)

    # someone else holds the environment: Start is refused in the modal, nothing new is stored
    bot.runner.start(str(choices["demo"].path), {"env": "staging"}, started_by="U0ALICE", front_end="slack",
                     chat={"channel": "C0OPS"})
    ready = launcher.plan_view(phase="ready", runbook="demo", params={"env": "staging"}, channel="C0OPS",
                               steps=[], preview="r-x")
    answer = post(url, interactive_body(submission_payload(ready, {}, user="U0BOB"))).json()
    assert "did not start" in json.dumps(answer["view"]) and "already active" in json.dumps(answer["view"])
    assert len([r for r in bot.store.list_runs() if not r["dry_run"]]) == 1


def test_a_runbook_broken_after_the_form_opened_is_refused_inline_and_nothing_is_stored(served):
    bot, server, fake, marks = served
    choices = launcher.catalogue(bot.runner.runbooks_dir)
    form = launcher.form_view(choices, selected="typed", channel="C0OPS")
    path = choices["typed"].path
    path.write_text(path.read_text().replace("kind: test.mark", "kind: test.nope"), encoding="utf-8")
    values = {"param:replicas": {"value": {"type": "number_input", "value": "2"}}}
    answer = post(server.url + EVENTS_PATH, interactive_body(submission_payload(form, values, user="U0ALICE"))).json()
    assert answer == {"response_action": "errors", "errors": {"launch_runbook": "pick a runbook that loads"}}
    assert bot.store.list_runs() == []


def test_engine_refusals_land_under_the_input_they_name():
    model = launcher.catalogue(ROOT / "runbooks")["aws-ecs-to-do-app"].model
    assert launcher.refusal_errors(model, "parameter new_ip: expected an address") == \
        {"param:new_ip": "parameter new_ip: expected an address"}
    assert list(launcher.refusal_errors(model, "run r-1 is already active")) == ["param:env"]


def test_run_name_leaving_out_a_required_param_opens_its_form(served):
    bot, server, fake, marks = served
    url = server.url + EVENTS_PATH
    post(url, command_body("run typed", user="U0ALICE", response_url=fake.response_url()))
    form = _view(wait_for(lambda: fake.calls_to("views.open"), message="form")[0])
    assert _element(form, "launch_runbook")["initial_option"]["value"] == "typed"
    assert _element(form, "param:replicas")["type"] == "number_input" and form["submit"]["text"] == "Plan it"
    assert bot.store.list_runs() == []
    # a runbook whose params all have defaults still starts at once
    post(url, command_body("run demo", user="U0ALICE", response_url=fake.response_url()))
    wait_for(lambda: bot.store.list_runs(), message="run started")
    assert len(fake.calls_to("views.open")) == 1


@pytest.mark.parametrize("metadata", ["not json", "[1, 2]", '{"runbook": 5, "params": "x", "channel": 7}'])
def test_damaged_launcher_metadata_is_refused_inline_and_starts_nothing(served, metadata):
    bot, server, fake, marks = served
    url = server.url + EVENTS_PATH
    choices = launcher.catalogue(bot.runner.runbooks_dir)
    for view in (launcher.form_view(choices, selected="demo", channel="C0OPS"),
                 launcher.plan_view(phase="ready", runbook="demo", params={}, channel="C0OPS", preview="r-x")):
        view = dict(view, private_metadata=metadata)
        answer = post(url, interactive_body(submission_payload(view, {}, user="U0ALICE")))
        assert answer.status_code == 200
        body = answer.json()
        assert body["response_action"] in ("errors", "update")
        if body["response_action"] == "update":
            assert "did not start" in json.dumps(body["view"])
    assert bot.store.list_runs() == []


def test_a_damaged_reject_form_records_nothing(served):
    bot, server, fake, marks = served
    view = {"type": "modal", "callback_id": "reject_reason", "private_metadata": "{{oops",
            "title": {"type": "plain_text", "text": "Reject this step"}, "blocks": []}
    values = {"reject_reason": {"reason": {"type": "plain_text_input", "value": "no"}}}
    answer = post(server.url + EVENTS_PATH, interactive_body(submission_payload(view, values, user="U0BOB"))).json()
    assert answer["response_action"] == "errors" and "cannot be read" in answer["errors"]["reject_reason"]
