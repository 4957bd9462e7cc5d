"""The Slack front end: slash commands, approval buttons, Block Kit from templates, Socket Mode and HTTP.

The CLI calls one function:

    from bot.chat.slack import serve, settings_present
    if settings_present():
        raise SystemExit(serve(http=args.http, port=args.port, host=args.host))

`serve` checks the settings (one line per problem, exit code 2), opens the store, builds the
runner with this front end as its channel and Slack as its approver directory, resumes active
runs, then serves: Socket Mode when SLACK_APP_TOKEN is set (and `http` is False), else HTTP on
`port` (default $PORT, then 3000) on `host` (see `default_host`). Both serve `GET /healthz`.
"""

from __future__ import annotations

import logging
import os
import sys

from bot import config
from bot.chat.slack.settings import SettingsError, load
from bot.chat.slack.settings import present as settings_present

log = logging.getLogger(__name__)

__all__ = ["serve", "settings_present"]


def default_host() -> str:
    """Where to listen without `--host`: every interface under a platform that sets `$PORT` (Heroku,
    App Platform, Fly route to it from outside), else loopback only, so a laptop or a shared host
    does not expose the bot's endpoint by accident."""
    return "0.0.0.0" if os.environ.get("PORT") else "127.0.0.1"


def serve(http: bool = False, port: int | None = None, host: str | None = None) -> int:
    """Run the Slack bot until interrupted; returns the process exit code."""
    try:
        settings = load(http=http)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"runbook-bot: {problem}", file=sys.stderr)
        return 2
    try:
        config.lease_seconds()  # checked now, in one line, not as a traceback once serving
    except ValueError as exc:
        print(f"runbook-bot: {exc}", file=sys.stderr)
        return 2

    from slack_sdk.errors import SlackApiError

    from bot.chat.slack.app import build
    from bot.chat.slack.server import run_http
    from bot.chat.slack.socket_mode import SocketModeRunner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    port = port or int(os.environ.get("PORT") or 3000)
    host = host or default_host()
    bot = build(settings)
    try:
        try:
            auth = bot.client.auth_test()
        except SlackApiError as exc:
            print(f"runbook-bot: Slack refused SLACK_BOT_TOKEN ({exc.response.get('error')})", file=sys.stderr)
            return 2
        log.info("connected to Slack workspace %s as %s", auth.get("team"), auth.get("user"))
        resumed = bot.runner.resume_all()
        if resumed:
            log.info("resumed %d active run(s): %s", len(resumed), ", ".join(resumed))
        bot.start_background()
        if settings.socket_mode:
            assert settings.app_token is not None
            bot.socket = SocketModeRunner(bot.app, settings.app_token)
            try:
                bot.socket.start()
            except SlackApiError as exc:
                print(f"runbook-bot: Slack refused SLACK_APP_TOKEN ({exc.response.get('error')}); it needs the"
                      " connections:write scope and Socket Mode enabled", file=sys.stderr)
                return 2
            run_http(bot, host=host, port=port, slack_routes=False)
        else:
            run_http(bot, host=host, port=port)
    finally:
        bot.close(wait_for_steps=False)
    # Steps the store says are applying, not pool threads (idle ones wait on their queue, alive).
    busy = bot.runner.executor is not None and _steps_applying(bot.store)
    if busy:
        # A step still applying would keep the interpreter from exiting (pool threads are joined at
        # exit) for as long as it runs. Its state is in the store; the next start finds it
        # interrupted and asks a person. Everything for Slack has been flushed above.
        log.warning("stopping with step(s) still applying; they will show as interrupted at the next start")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _steps_applying(store: object) -> bool:
    try:
        runs = store.list_runs(states=("running", "rolling_back"))  # type: ignore[attr-defined]
        return any(step["state"] in ("applying", "verifying")
                   for run in runs for step in store.get_steps(run["id"]))  # type: ignore[attr-defined]
    except Exception:  # the store failing here must not hide the shutdown; assume the worst
        return True
