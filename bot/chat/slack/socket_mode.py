"""Socket Mode: bolt's `SocketModeHandler` plus a watchdog and a health probe.

    sock = SocketModeRunner(app, app_token)
    sock.start()                 # connects (apps.connections.open, then the WebSocket); non-blocking
    sock.health()                # {"connected": True, "last_pong_age": 1.2, "reconnects": 0, ...}
    sock.close()

slack_sdk's built-in client already pings every `ping_interval` seconds, drops a connection that
has not answered for four intervals and reconnects when Slack closes it or says `disconnect`. The
watchdog here covers what that monitor cannot see: the known case of a client that stays silent
after a reconnect (python-slack-sdk #1701). If the client reports no live connection for more than
`grace` seconds, it forces a new one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)


class SocketModeRunner:
    def __init__(self, app: Any, app_token: str, *, ping_interval: float = 10.0, concurrency: int = 32,
                 grace: float | None = None, check_every: float = 1.0) -> None:
        self.handler = SocketModeHandler(app, app_token, ping_interval=ping_interval, concurrency=concurrency)
        self.grace = grace if grace is not None else ping_interval * 3
        self.check_every = check_every
        self.reconnects = 0
        self.forced_reconnects = 0
        self._session: str | None = None
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="slack-socket-watchdog")

    @property
    def client(self) -> Any:
        return self.handler.client

    def start(self) -> None:
        self.handler.connect()
        self._session = self.client.session_id()
        self._watchdog.start()

    def is_connected(self) -> bool:
        return bool(self.client.is_connected())

    def health(self) -> dict[str, Any]:
        session = self.client.current_session
        last = getattr(session, "last_ping_pong_time", None) if session is not None else None
        self._note_session()
        return {
            "connected": self.is_connected(),
            "session_id": self.client.session_id(),
            "last_pong_age": round(time.time() - last, 1) if last else None,
            "reconnects": self.reconnects,
            "forced_reconnects": self.forced_reconnects,
        }

    def _note_session(self) -> None:
        session = self.client.session_id()
        if session is not None and session != self._session:
            if self._session is not None:
                self.reconnects += 1
            self._session = session

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every):
            self._note_session()
            if self.is_connected():
                self._down_since = None
                continue
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
            elif now - self._down_since > self.grace:
                log.warning("Socket Mode connection down for %.0fs; forcing a new connection", now - self._down_since)
                self.forced_reconnects += 1
                self._down_since = now
                try:
                    self.client.connect_to_new_endpoint(force=True)
                except Exception as exc:  # keep watching: the next check tries again
                    log.error("reconnecting to Slack failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self.handler.close()
