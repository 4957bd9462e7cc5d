"""`serve --http`: the bolt App behind uvicorn (ASGI, via Starlette), not bolt's development server.

    server = HttpServer(bot, host="127.0.0.1", port=0)   # port 0: any free port (tests)
    server.start(); server.port; ...; server.stop()
    run_http(bot, host="0.0.0.0", port=3000)              # blocks; Ctrl-C / SIGTERM stop it

Routes: `POST /slack/events` (slash commands, interactivity, events: one Request URL for all),
`GET /healthz` (200 or 503 with a JSON report). In Socket Mode only `/healthz` is served: the
app then verifies no signatures, so it must not accept HTTP requests from anyone.

Why not bolt's `slack_bolt.adapter.starlette.SlackRequestHandler` as it is: it calls the
synchronous `App.dispatch` inside the event loop, so one slow request (a listener that takes a
while to reach `ack()`) would stall every other. We use its request/response converters and run
`dispatch` on Starlette's thread pool instead; the event loop only moves bytes. One uvicorn worker:
the runner and its sender thread live in this process (the store would keep several correct,
but messages would race).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from typing import Any

import uvicorn
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.chat.slack.request_guard import MAX_BODY, RequestGuard

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def asgi_app(bolt_app: Any, health: Any, *, slack_routes: bool = True, gate: Any = None,
             guard: RequestGuard | None = None) -> Starlette:
    """`gate` (an `AckGate`) is told about every Slack request from its first byte to its answer;
    `guard` (a `RequestGuard`) answers oversized, replayed and malformed requests before bolt."""

    async def events(request: Request) -> Response:
        if gate is not None:
            gate.enter()
        try:
            body = await _capped_body(request)
            refusal = guard.check(request.headers, body) if guard is not None else None
            if refusal is not None:
                return Response(refusal.body, status_code=refusal.status, media_type=refusal.content_type)
            bolt_response = await run_in_threadpool(bolt_app.dispatch, to_bolt_request(request, body))
            return to_starlette_response(bolt_response)
        finally:
            if gate is not None:
                gate.leave()

    async def healthz(request: Request) -> Response:
        ok, report = await run_in_threadpool(health)
        return JSONResponse(report, status_code=200 if ok else 503)

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if slack_routes:
        routes.append(Route(EVENTS_PATH, events, methods=["POST"]))
    return Starlette(routes=routes)


async def _capped_body(request: Request) -> bytes:
    """The body, read no further than one byte past `MAX_BODY` (the guard then answers 413)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            break
    return b"".join(chunks)


def _guard_for(bot_or_app: Any) -> RequestGuard | None:
    settings = getattr(bot_or_app, "settings", None)
    secret = getattr(settings, "signing_secret", None) if settings is not None else None
    return RequestGuard(secret) if secret else None


class HttpServer:
    """uvicorn in a thread, for tests and benchmarks (production calls `run_http`, which blocks)."""

    def __init__(self, bot_or_app: Any, *, host: str = "127.0.0.1", port: int = 0, health: Any = None,
                 slack_routes: bool = True) -> None:
        bolt_app = getattr(bot_or_app, "app", bot_or_app)
        health = health or getattr(bot_or_app, "health", None) or (lambda: (True, {"ok": True}))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        gate = getattr(bot_or_app, "gate", None)
        app = asgi_app(bolt_app, health, slack_routes=slack_routes, gate=gate, guard=_guard_for(bot_or_app))
        config = uvicorn.Config(app, log_level="warning",
                                access_log=False, lifespan="off", timeout_keep_alive=30, backlog=2048)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True, name="slack-http")

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout: float = 10.0) -> HttpServer:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self.server.started:
                return self
            deadline.wait(0.02)
        raise RuntimeError("the HTTP server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def run_http(bot: Any, *, host: str, port: int, slack_routes: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then drains open requests and this returns.

    uvicorn re-raises the signal it caught once it has stopped, which would kill the process
    before the caller can close the bot (drain the Slack sender, stop the runner's threads). A
    no-op handler installed here receives that re-raised signal instead, so this simply returns.
    """
    app = asgi_app(bot.app, bot.health, slack_routes=slack_routes, gate=getattr(bot, "gate", None),
                   guard=_guard_for(bot))
    log.info("serving %s on http://%s:%s", "Slack requests and /healthz" if slack_routes else "/healthz", host, port)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: None)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, lifespan="off",
                    timeout_keep_alive=30, workers=1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
