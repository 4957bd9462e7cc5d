"""The embedded sandbox: local stand-ins for the two platforms, so the demo runs with no credentials.

    with Sandbox() as box:          # HTTP services on 127.0.0.1, ports chosen by the OS
        box.env                     # {"SANDBOX_OLD_URL": "http://127.0.0.1:41234", ...}

`runbook-bot serve` without Slack settings starts it and walks `runbooks/demo.yaml` in the console.
The "new" service answers its health check only when the request carries the right `Host` header
(seed 002's health checks failed on exactly that), so the demo shows why `http.check` has a `host`.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rich.console import Console

from bot import config

DEMO_HOST = "api.example.com"


class _Service(BaseHTTPRequestHandler):
    name = "service"
    require_host: str | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        host = (self.headers.get("Host") or "").split(":")[0]
        if self.path.startswith("/healthz"):
            if self.require_host and host != self.require_host:
                self._reply(421, {"ok": False, "error": f"unknown host {host!r}"})
            else:
                self._reply(200, {"ok": True, "service": self.name})
        else:
            self._reply(200, {"service": self.name, "path": self.path})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:  # keep the console for the run
        pass


def _serve(name: str, require_host: str | None) -> ThreadingHTTPServer:
    handler = type(f"{name.title()}Service", (_Service,), {"name": name, "require_host": require_host})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name=f"sandbox-{name}", daemon=True).start()
    return server


class Sandbox:
    def __init__(self) -> None:
        self.servers: list[ThreadingHTTPServer] = []
        self.env: dict[str, str] = {}

    def __enter__(self) -> Sandbox:
        old = _serve("old", None)
        new = _serve("new", DEMO_HOST)
        self.servers = [old, new]
        self.env = {
            "SANDBOX_OLD_URL": f"http://127.0.0.1:{old.server_address[1]}",
            "SANDBOX_NEW_URL": f"http://127.0.0.1:{new.server_address[1]}",
        }
        os.environ.update(self.env)
        return self

    def __exit__(self, *exc: Any) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def run_demo(console: Console, *, runbook: str | None = None, interactive: bool | None = None) -> int:
    """Walk the shipped demo runbook on the sandbox; approvals at the prompt (auto without a terminal)."""
    import sys

    from bot.chat.console import ConsoleChannel, ConsoleSession
    from bot.engine.runner import Runner, StartRefused
    from bot.engine.store import Store

    path = runbook or str(config.runbooks_dir() / "demo.yaml")
    interactive = sys.stdin.isatty() if interactive is None else interactive
    user = "sandbox-operator"
    with Sandbox():
        runner = Runner(Store.configured(), ConsoleChannel(console))
        if not interactive:
            console.print("no terminal to ask: approving each step as 'sandbox-operator' (rehearsal only)")
        try:
            run = runner.start(path, {}, started_by=user, front_end="console")
        except StartRefused as exc:
            console.print(f"[red]cannot start the demo:[/] {exc}")
            return 2
        code = ConsoleSession(runner, console, user=user, auto_approve=not interactive,
                              interactive=interactive).follow(run.id)
        console.print(f"store: {config.store_path()} · see it again with `runbook-bot status {run.id}`")
        return code
