"""Slack settings from the environment, validated once with one clear line per problem.

    >>> from bot.chat.slack.settings import load, SettingsError
    >>> try:
    ...     load({}, http=True)
    ... except SettingsError as exc:
    ...     print(exc)
    SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page
    SLACK_SIGNING_SECRET is not set: copy the Signing Secret from the app's Basic Information page (needed by serve --http)

Values are registered with `bot.secrets` as soon as they are read, so no later log line or message
can show them; the messages here name the variable and what is wrong, never the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot import secrets

NAMES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
_SIGNING_SECRET = re.compile(r"[0-9a-f]{32}")


class SettingsError(Exception):
    """Start-up refused; `problems` holds one line per problem (also the str of the exception)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str
    signing_secret: str | None
    app_token: str | None  # set: Socket Mode
    api_url: str | None  # SLACK_API_URL: another Web API base (tests, proxies); None = slack.com
    default_channel: str | None  # SLACK_CHANNEL: where runs started outside Slack are posted
    alert_repage: float = 300.0  # RUNBOOK_BOT_ALERT_REPAGE: page on-call again this often until acknowledged

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    def __repr__(self) -> str:  # never show the values, even in a traceback
        return (f"SlackSettings(socket_mode={self.socket_mode}, api_url={self.api_url!r},"
                f" default_channel={self.default_channel!r})")


def present(env: Mapping[str, str] | None = None) -> bool:
    """True when any Slack setting is given: the CLI then serves Slack instead of the console demo."""
    env = os.environ if env is None else env
    return any(env.get(name) for name in NAMES)


def load(env: Mapping[str, str] | None = None, *, http: bool) -> SlackSettings:
    """Read and check the settings; raise `SettingsError` listing every problem at once.

    Socket Mode (`SLACK_APP_TOKEN` set, `http=False`) needs no signing secret: Slack does not sign
    envelopes on the socket. HTTP mode (`http=True`, or no app token) needs it and ignores the app token.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    bot_token = env.get("SLACK_BOT_TOKEN") or None
    signing_secret = env.get("SLACK_SIGNING_SECRET") or None
    app_token = env.get("SLACK_APP_TOKEN") or None
    secrets.register(bot_token, signing_secret, app_token)

    if bot_token is None:
        problems.append("SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-...) from the app's"
                        " OAuth & Permissions page")
    elif not bot_token.startswith("xoxb-") or any(c.isspace() for c in bot_token):
        problems.append("SLACK_BOT_TOKEN is malformed: a bot token starts with xoxb- and has no spaces"
                        " (a user token xoxp- or an app token xapp- does not work here)")

    http = http or app_token is None  # no app token: HTTP mode, whatever the flag said
    if signing_secret is None:
        if http:
            problems.append("SLACK_SIGNING_SECRET is not set: copy the Signing Secret from the app's Basic"
                            " Information page (needed by serve --http)")
    elif not _SIGNING_SECRET.fullmatch(signing_secret.strip()):
        problems.append("SLACK_SIGNING_SECRET is malformed: expected 32 lowercase hexadecimal characters"
                        f" (got {len(signing_secret)} characters)")

    if app_token is not None and not http:
        if not app_token.startswith("xapp-") or any(c.isspace() for c in app_token):
            problems.append("SLACK_APP_TOKEN is malformed: an app-level token starts with xapp- and needs the"
                            " connections:write scope (Basic Information > App-Level Tokens)")

    api_url = env.get("SLACK_API_URL") or None
    if api_url is not None:
        if not re.match(r"https?://", api_url):
            problems.append(f"SLACK_API_URL is malformed: expected an http(s) URL, got {api_url!r}")
        elif not api_url.endswith("/"):
            api_url += "/"  # WebClient joins method names onto it with urljoin

    channel = env.get("SLACK_CHANNEL") or None
    if channel is not None and not re.fullmatch(r"[CGD][A-Z0-9]{2,}", channel):
        problems.append(f"SLACK_CHANNEL is malformed: expected a channel id like C0123ABCD, got {channel!r}"
                        " (a channel id, not its #name)")

    alert_repage = 300.0
    raw_repage = env.get("RUNBOOK_BOT_ALERT_REPAGE") or None
    if raw_repage is not None:
        from bot.runbook.model import parse_duration

        try:
            alert_repage = parse_duration(raw_repage)
            if alert_repage < 30:
                raise ValueError("at least 30s: Slack rate-limits posts, and people need time to react")
        except ValueError as exc:
            problems.append(f"RUNBOOK_BOT_ALERT_REPAGE is malformed: {exc} (e.g. 5m)")

    if problems:
        raise SettingsError(problems)
    assert bot_token is not None
    return SlackSettings(
        bot_token=bot_token,
        signing_secret=signing_secret.strip() if signing_secret else None,
        app_token=None if http else app_token,
        api_url=api_url,
        default_channel=channel,
        alert_repage=alert_repage,
    )
