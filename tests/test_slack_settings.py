"""Slack settings: one clear line per problem, never a value; `serve` stops before doing anything."""

from __future__ import annotations

import pytest

from bot import secrets
from bot.chat.slack import serve, settings_present
from bot.chat.slack.settings import SettingsError, load
from bot.config import PROJECT_ROOT
from tests.fixtures.slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET


def problems(env, http):
    with pytest.raises(SettingsError) as info:
        load(env, http=http)
    return info.value.problems


def test_nothing_set_names_each_missing_setting():
    assert problems({}, http=True) == [
        "SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions"
        " page",
        "SLACK_SIGNING_SECRET is not set: copy the Signing Secret from the app's Basic Information page (needed"
        " by serve --http)",
    ]


@pytest.mark.parametrize("env,http,expected", [
    ({"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_SIGNING_SECRET": SIGNING_SECRET}, True,
     ["SLACK_BOT_TOKEN is malformed"]),
    ({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": "not-hex"}, True,
     ["SLACK_SIGNING_SECRET is malformed: expected 32 lowercase hexadecimal characters (got 7 characters)"]),
    ({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": "xoxb-wrong-kind"}, False, ["SLACK_APP_TOKEN is malformed"]),
    ({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_CHANNEL": "#ops"}, True,
     ["SLACK_CHANNEL is malformed: expected a channel id like C0123ABCD, got '#ops'"]),
    ({"SLACK_BOT_TOKEN": "xoxb- spaced", "SLACK_SIGNING_SECRET": "x", "SLACK_API_URL": "ftp://x"}, True,
     ["SLACK_BOT_TOKEN is malformed", "SLACK_SIGNING_SECRET is malformed", "SLACK_API_URL is malformed"]),
])
def test_each_malformed_setting_is_one_line(env, http, expected):
    found = problems(env, http)
    assert len(found) == len(expected)
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start)


def test_values_are_registered_and_never_shown():
    bad_secret = "s3cret-but-wrong-format-value"
    found = problems({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": bad_secret}, http=True)
    assert bad_secret not in "\n".join(found)
    assert secrets.is_registered(bad_secret) and secrets.is_registered(BOT_TOKEN)
    settings = load({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}, http=True)
    assert BOT_TOKEN not in repr(settings) and SIGNING_SECRET not in repr(settings)


def test_socket_mode_needs_no_signing_secret_and_http_ignores_the_app_token():
    socket = load({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}, http=False)
    assert socket.socket_mode and socket.signing_secret is None
    http = load({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET},
                http=True)
    assert not http.socket_mode
    # no app token: HTTP whatever the flag says, so the signing secret is required
    assert problems({"SLACK_BOT_TOKEN": BOT_TOKEN}, http=False)[0].startswith("SLACK_SIGNING_SECRET is not set")
    assert load({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                 "SLACK_API_URL": "http://127.0.0.1:9/api"}, http=True).api_url == "http://127.0.0.1:9/api/"


def test_serve_refuses_to_start_with_one_line_per_problem(monkeypatch, capsys):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxp-user-token")
    assert settings_present()
    assert serve(http=True, port=0) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "runbook-bot: SLACK_BOT_TOKEN is malformed: a bot token starts with xoxb- and has no spaces (a user token"
        " xoxp- or an app token xapp- does not work here)",
        "runbook-bot: SLACK_SIGNING_SECRET is not set: copy the Signing Secret from the app's Basic Information"
        " page (needed by serve --http)",
    ]


def test_serve_stops_when_slack_refuses_the_token(slack_env, capsys):
    slack_env.fail("auth.test", "invalid_auth")
    assert serve(http=True, port=0) == 2
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in capsys.readouterr().err


def test_no_settings_means_not_present():
    assert not settings_present({})


def test_the_manifest_declares_what_the_bot_uses():
    import yaml

    from bot.chat.slack.ids import COMMAND, Shortcut

    manifest = yaml.safe_load((PROJECT_ROOT / "slack-manifest.yaml").read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands", "chat:write", "files:write", "usergroups:read", "users:read", "users:read.email", "im:write"}
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [COMMAND]
    # the launcher's global shortcut and the App Home the listeners serve
    assert [(s["type"], s["callback_id"]) for s in manifest["features"]["shortcuts"]] == [("global", Shortcut.LAUNCH.value)]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")


def test_the_alert_repage_interval_is_a_duration_checked_at_start_up():
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_SIGNING_SECRET": "0123456789abcdef0123456789abcdef"}
    assert load({**env, "RUNBOOK_BOT_ALERT_REPAGE": "10m"}, http=True).alert_repage == 600
    assert load(env, http=True).alert_repage == 300
    for bad in ("soon", "5s"):
        with pytest.raises(SettingsError) as caught:
            load({**env, "RUNBOOK_BOT_ALERT_REPAGE": bad}, http=True)
        assert caught.value.problems[0].startswith("RUNBOOK_BOT_ALERT_REPAGE is malformed")
