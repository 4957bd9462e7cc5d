"""Build the bolt `App` and everything it serves: store, Web API client, channel, directory, runner.

    from bot.chat.slack.app import build
    bot = build(settings)                 # SlackSettings from bot.chat.slack.settings.load
    bot.runner.resume_all()
    ...                                   # serve it: bot.chat.slack.server / socket_mode
    bot.close()

Why two thread pools: bolt runs each listener on `listener_executor` and answers Slack as soon as
the listener calls `ack()`, but only once a pool thread has *started* the listener. If listeners
did their work on that pool, a burst of slow work (an approval that looks up a user group, a
run start that plans) would leave new clicks queued behind it, unacknowledged, towards Slack's
3-second limit. So listeners only ack and hand off: the listener pool (32 threads) stays free for
acks, and the work pool (4 threads) does the rest, giving way to acks in flight (`AckGate`). Applying steps happens on a third pool, the
runner's own (`Runner(background=True)`), so a long DB copy never holds a Slack thread.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse
from slack_sdk import WebClient

from bot import config, secrets
from bot.chat.slack import listeners
from bot.chat.slack.channel import SlackChannel
from bot.chat.slack.deliveries import Deliveries, delivery_key
from bot.chat.slack.directory import SlackDirectory
from bot.chat.slack.home import HomeChannel, HomePublisher, ThreadLinks
from bot.chat.slack.service import SlackService
from bot.chat.slack.settings import SlackSettings
from bot.chat.slack.web import OutboxWorker, Poster, make_client
from bot.engine.channel import FanoutChannel
from bot.engine.leases import Lease
from bot.engine.liveness import process_token
from bot.engine.runner import Runner
from bot.engine.store import Store
from bot.watch.scheduler import WatchScheduler

OUTBOX_LEASE = "slack-outbox"
OUTBOX_LEASE_SECONDS = 15.0  # three flush intervals: a dead drainer's queue waits at most this long

log = logging.getLogger(__name__)

LISTENER_WORKERS = 32
WORK_WORKERS = 4


class AckGate:
    """Acks first: counts requests on their way to `ack()`, and lets work wait for a quiet moment.

    Python threads share one interpreter lock, so work running while a burst of clicks arrives
    slows every ack down. Slack gives an ack 3 seconds and the work behind it no deadline, so a
    work item waits until no request is on its ack path, but never longer than `max_defer`
    seconds (under a sustained burst the work still moves, just later). A lone click waits for
    nothing: its own ack is done before its work is picked up.
    """

    def __init__(self, max_defer: float = 0.25) -> None:
        self.max_defer = max_defer
        self._inflight = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        with self._cond:
            self._inflight += 1

    def leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    def __enter__(self) -> AckGate:
        self.enter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leave()

    def wait_quiet(self, settle: float = 0.005) -> None:
        """Return once no request has been in flight for `settle` seconds, or after `max_defer`."""
        deadline = time.monotonic() + self.max_defer
        with self._cond:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if self._inflight == 0:
                    # quiet now; still quiet a moment later? (requests arrive back to back in a burst)
                    self._cond.wait(min(settle, left))
                    if self._inflight == 0:
                        return
                else:
                    self._cond.wait_for(lambda: self._inflight == 0, timeout=left)


class WorkPool(ThreadPoolExecutor):
    """The post-ack work: waits for a quiet moment (`AckGate`), and never fails unseen (nobody
    waits on these futures, so errors are logged here)."""

    def __init__(self, max_workers: int, *, gate: AckGate | None = None, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self.gate = gate

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        def logged() -> Any:
            if self.gate is not None:
                self.gate.wait_quiet()
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("Slack work item %s failed", getattr(fn, "__name__", fn))
                raise

        return super().submit(logged)


def build_app(*, client: WebClient, signing_secret: str | None, service: Any, work: ThreadPoolExecutor,
              listener_workers: int = LISTENER_WORKERS, gate: AckGate | None = None) -> App:
    """The bolt App with every listener; `signing_secret=None` only for Socket Mode (nothing to verify)."""
    app = App(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
        # `serve` checks the token itself with a clear message; bolt's check at construction would
        # raise a bare BoltError first. Bolt still calls auth.test once, on the first request.
        token_verification_enabled=False,
        listener_executor=ThreadPoolExecutor(max_workers=listener_workers, thread_name_prefix="slack-listener"),
        logger=logging.getLogger("runbook_bot.slack.bolt"),
    )

    deliveries = Deliveries(service.store)

    @app.middleware
    def once(body: dict[str, Any], next: Any) -> BoltResponse | None:  # noqa: A002 (bolt's name)
        # First: a delivery another replica (or socket) already took is acknowledged and dropped.
        if not deliveries.claim(body):
            log.info("a repeated Slack delivery (%s) was acknowledged and dropped", delivery_key(body))
            return BoltResponse(status=200, body="")
        next()
        return None

    @app.middleware
    def inject(context: BoltContext, next: Any) -> None:  # noqa: A002 (bolt's name)
        context["service"] = service
        context["work"] = work
        if gate is None:
            next()
            return
        gate.enter()  # `next()` returns once the listener has acked (bolt's threaded runner waits for it)
        try:
            next()
        finally:
            gate.leave()

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("listener failed on %s: %s", body.get("type") or body.get("command"), error, exc_info=error)

    listeners.register(app)
    return app


@dataclass
class SlackBot:
    settings: SlackSettings
    store: Store
    client: WebClient
    poster: Poster
    channel: SlackChannel
    directory: SlackDirectory
    runner: Runner
    service: SlackService
    work: ThreadPoolExecutor
    app: App
    outbox: OutboxWorker
    gate: AckGate | None = None
    home: HomePublisher | None = None
    reminders: Any = None  # bot.chat.slack.reminders.Reminders once serving
    watch_scheduler: Any = None  # bot.watch.scheduler.WatchScheduler once serving
    socket: Any = None  # SocketModeRunner when serving over Socket Mode
    _closed: threading.Event = field(default_factory=threading.Event)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """What GET /healthz reports: the store answers, the outbox, and the socket's liveness."""
        report: dict[str, Any] = {"replica": process_token()}
        ok = True
        try:
            self.store.conn().execute("SELECT COUNT(*) FROM runs").fetchone()
            report["store"] = {"ok": True, "path": self.store.path,
                               "backend": "postgresql" if config.is_postgres_url(self.store.path) else "sqlite"}
            report["outbox_pending"] = len(self.poster.pending())
            report["leases"] = self._leases()
        except Exception as exc:  # a health check reports any failure instead of raising it
            ok = False
            report["store"] = {"ok": False, "error": secrets.redact(f"{type(exc).__name__}: {exc}")}
        if self.socket is not None:
            socket_health = self.socket.health()
            report["socket_mode"] = socket_health
            ok = ok and socket_health["connected"]
        report["mode"] = "socket" if self.socket is not None else "http"
        report["ok"] = ok
        return ok, report

    def _leases(self) -> dict[str, Any]:
        """Per lease this replica competes for: whether it holds it, and who does."""
        mine = {"outbox": self.outbox.lease}
        if self.watch_scheduler is not None:
            mine["watch_scheduler"] = self.watch_scheduler.lease
        out = {}
        for name, lease in mine.items():
            if lease is None:
                continue
            holder = lease.holder()
            live = holder is not None and holder["expires_at"] > lease.now()
            out[name] = {"held_here": bool(live and holder["owner"] == lease.owner),
                         "holder": holder["owner"] if live else None}
        return out

    def start_background(self, *, watches: bool = True) -> None:
        """The outbox worker and the watch scheduler (scheduled watch summaries post to Slack)."""
        if not self.outbox.is_alive():
            self.outbox.start()
        if getattr(self, "_reaper_stop", None) is None:  # steps of dead processes become interrupted while we serve
            self._reaper_stop = self.runner.start_reaper()
        if self.home is not None:
            self.home.start()
        if self.reminders is not None:
            self.reminders.start()
        if watches and self.watch_scheduler is None:
            # the engine's channel: summaries and alerts reach the thread, the App Home and the breach pager
            self.watch_scheduler = WatchScheduler(self.store, self.runner.channel, run_view=self.runner.view,
                                                  lease_seconds=config.lease_seconds())
            self.watch_scheduler.start()

    def close(self, *, wait_for_steps: bool = True) -> None:
        """Stop serving and flush what is queued for Slack. `wait_for_steps=False` (serve, on SIGTERM)
        leaves steps that are applying alone: the process is about to exit, and the next start marks
        them interrupted for a person to decide, as after any crash."""
        if self._closed.is_set():
            return
        self._closed.set()
        if getattr(self, "_reaper_stop", None) is not None:
            self._reaper_stop.set()
        if self.socket is not None:
            self.socket.close()
        if self.watch_scheduler is not None:
            self.watch_scheduler.shutdown()
        self.outbox.stop()
        if self.reminders is not None:
            self.reminders.close()
        self.work.shutdown(wait=True, cancel_futures=False)
        if wait_for_steps:
            self.runner.shutdown()
        self.channel.drain(timeout=15)
        self.channel.close()
        if self.home is not None:
            self.home.close()


def build(settings: SlackSettings, *, store: Store | None = None, runner_workers: int = 8) -> SlackBot:
    store = store or Store.configured()
    client = make_client(settings.bot_token, base_url=settings.api_url)
    poster = Poster(client, store)
    directory = SlackDirectory(client)
    gate = AckGate()
    channel = SlackChannel(poster, default_channel=settings.default_channel, directory=directory, gate=gate)
    runner: Runner | None = None
    home = HomePublisher(client, store, lambda run_id: runner.view(run_id), directory=directory, gate=gate,
                         thread_link=ThreadLinks(client, poster))
    # The engine tells both: the run's thread, and the App Home of the people the run concerns.
    fanout = FanoutChannel(channel, HomeChannel(home))
    runner = Runner(store, fanout, directory=directory, background=True, max_workers=runner_workers)
    service = SlackService(runner=runner, store=store, poster=poster, channel=channel)
    service.home = home
    # A run's thread exists only once its header is posted (on the sender thread): the Home gets the link then.
    poster.on_posted = lambda run_id, name, _channel, _ts: home.thread_started(run_id) if name == "header" else None
    from bot.chat.slack.reminders import Reminders

    reminders = Reminders(service, directory=directory, alert_repeat=settings.alert_repage)
    service.reminders = reminders
    fanout.channels = (*fanout.channels, reminders)  # watch alerts page on-call until acknowledged
    work = WorkPool(WORK_WORKERS, gate=gate, thread_name_prefix="slack-work")
    app = build_app(client=client, signing_secret=settings.signing_secret if not settings.socket_mode else None,
                    service=service, work=work, gate=gate)
    return SlackBot(settings=settings, store=store, client=client, poster=poster, channel=channel,
                    directory=directory, runner=runner, service=service, work=work, app=app,
                    outbox=OutboxWorker(poster, lease=Lease(store, OUTBOX_LEASE, owner=process_token(),
                                                            seconds=OUTBOX_LEASE_SECONDS)),
                    gate=gate, home=home, reminders=reminders)
