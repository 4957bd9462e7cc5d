"""Web API calls that are retried, and posts that are never silently dropped.

    client = make_client(token, base_url=None)          # a WebClient with our retry handlers
    poster = Poster(client, store)                       # posts; failures land in the outbox
    ts = poster.call("chat.postMessage", ref=("run1", "header"), channel="C1", text="hi", blocks=[...])
    poster.flush()                                       # retry what is waiting (a thread does it)

Why an outbox: slack_sdk's retry handlers cover connection errors and `ratelimited` answers, but a
longer outage (Slack 5xx for minutes, a network partition) outlasts them. A run's messages are its
audit trail in the channel, so a post that fails after retries is written to the `slack_outbox`
table and re-sent later, in order. For each message (`ref`: run id and a name such as "header" or
"step:copy-db") only the newest content waits: a later update supersedes a queued one, and an
update of a message that was never posted becomes the post itself.

Every outgoing payload passes through `bot.secrets.redact_obj` first: the last line of defence.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import secrets

log = logging.getLogger(__name__)

OUTBOX = "slack_outbox"
# A person is waiting for the Approve button: retry at least this often once Slack is back.
MAX_BACKOFF = 30.0
REFS = "slack_refs"

# Errors that no retry can fix: the payload or the target is wrong. These are logged and recorded
# as dead in the outbox (kept for the audit) instead of being retried forever.
PERMANENT_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "invalid_blocks_format",
    "msg_too_long", "no_text", "invalid_auth", "account_inactive", "token_revoked", "missing_scope",
    "cant_update_message", "edit_window_closed", "invalid_arguments", "msg_blocks_too_long",
}


def make_client(token: str, *, base_url: str | None = None, timeout: int = 10,
                max_retries: int = 3) -> WebClient:
    """A WebClient that retries connection errors, 5xx and `ratelimited` (honouring Retry-After)."""
    kwargs: dict[str, Any] = {}
    if base_url:
        kwargs["base_url"] = base_url
    return WebClient(
        token=token,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=max_retries),
            RateLimitErrorRetryHandler(max_retry_count=max_retries),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
        **kwargs,
    )


def _error_code(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return f"{type(exc).__name__}: {exc}"


class Poster:
    """Sends Web API calls; a call that still fails after the client's retries goes to the outbox.

    `on_posted(run_id, name, channel, ts)` is told when a message is first posted (now or from the
    outbox), so the caller can record its ts for later `chat.update`s.
    """

    def __init__(self, client: WebClient, store: Any, *,
                 on_posted: Callable[[str, str, str, str], None] | None = None,
                 on_recovered: Callable[[str, float], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.store = store
        self.on_posted = on_posted
        self.on_recovered = on_recovered  # (run id, seconds its messages were held) once its queue empties
        self.now = clock
        self._lock = threading.RLock()
        store.ensure_table(
            OUTBOX,
            {"id": int, "run_id": str, "name": str, "method": str, "payload": str, "attempts": int,
             "last_error": str, "state": str, "created_at": float, "next_at": float},
            pk="id",
        )
        store.ensure_table(REFS, {"run_id": str, "name": str, "channel": str, "ts": str, "at": float},
                           pk=("run_id", "name"))

    # -- message refs ----------------------------------------------------------------------------

    def ref(self, run_id: str, name: str) -> tuple[str, str] | None:
        row = self.store.conn().execute(
            f"SELECT channel, ts FROM {REFS} WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
        return (row["channel"], row["ts"]) if row else None

    def set_ref(self, run_id: str, name: str, channel: str, ts: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(f"INSERT OR REPLACE INTO {REFS}(run_id, name, channel, ts, at) VALUES (?, ?, ?, ?, ?)",
                         (run_id, name, channel, ts, self.now()))

    # -- calls -----------------------------------------------------------------------------------

    def api(self, method: str, **payload: Any) -> Any:
        """One call with the client's retries; raises on failure. Payload is redacted first."""
        payload = secrets.redact_obj(payload)
        if method == "files.upload_v2":
            return self.client.files_upload_v2(**payload)
        return self.client.api_call(method, json=payload)

    def post(self, run_id: str, name: str, *, channel: str, thread: str | None = None, **content: Any) -> str | None:
        """Post the message `name` of a run, or update it when it was posted before. Returns its ts.

        `thread` names another message of the run ("header") to reply under; it is resolved to a
        ts at send time, so a reply queued while the header itself waits in the outbox still lands
        in the thread.
        """
        body = {"channel": channel, "thread": thread, **content}
        with self._lock:
            if self._run_pending(run_id):
                # Keep order: a run lives in one thread, and nothing overtakes what its thread has queued.
                self._enqueue(run_id, name, "message", body)
                return None
        # The call itself (with the client's retries, which sleep through a 429's Retry-After) runs
        # outside the lock: a run's posts come one at a time from its own sender lane, and another
        # run's thread must not wait behind this one's back-off.
        try:
            return self._send_message(run_id, name, body)
        except (SlackApiError, SlackClientError, URLError, OSError) as exc:
            with self._lock:
                return self._failed(run_id, name, "message", body, exc)

    def send(self, method: str, *, run_id: str = "", name: str = "", **payload: Any) -> Any:
        """Any other call (ephemeral, file upload): retried by the client; on failure queued when it
        carries a `name`, else raised (an ephemeral answer to a click is useless an hour later)."""
        if name:
            with self._lock:
                if self._run_pending(run_id):  # behind the thread's queued messages, in order
                    self._enqueue(run_id, name, method, payload)
                    return None
        try:
            return self.api(method, **payload)
        except (SlackApiError, SlackClientError, URLError, OSError) as exc:
            if not name:
                raise
            with self._lock:
                self._failed(run_id, name, method, payload, exc)
            return None

    def _send_message(self, run_id: str, name: str, body: dict[str, Any]) -> str:
        body = dict(body)
        thread = body.pop("thread", None)
        existing = self.ref(run_id, name)
        if existing is not None:
            channel, ts = existing
            update = {k: v for k, v in body.items() if k in ("text", "blocks", "attachments")}
            self.api("chat.update", channel=channel, ts=ts, **update)
            return ts
        if thread:
            parent = self.ref(run_id, thread)
            if parent is not None:
                body["thread_ts"] = parent[1]
        response = self.api("chat.postMessage", **body)
        channel, ts = response["channel"], response["ts"]
        self.set_ref(run_id, name, channel, ts)
        if self.on_posted:
            self.on_posted(run_id, name, channel, ts)
        return ts

    # -- outbox ----------------------------------------------------------------------------------

    def _pending(self, run_id: str, name: str) -> bool:
        if not name:
            return False
        row = self.store.conn().execute(
            f"SELECT 1 FROM {OUTBOX} WHERE run_id = ? AND name = ? AND state = 'pending' LIMIT 1",
            (run_id, name)).fetchone()
        return row is not None

    def _run_pending(self, run_id: str) -> bool:
        row = self.store.conn().execute(
            f"SELECT 1 FROM {OUTBOX} WHERE run_id = ? AND state = 'pending' LIMIT 1", (run_id,)).fetchone()
        return row is not None

    def _failed(self, run_id: str, name: str, method: str, payload: dict[str, Any], exc: Exception) -> None:
        code = _error_code(exc)
        if code in PERMANENT_ERRORS:
            log.error("Slack refused %s for run %s (%s): %s; not retrying", method, run_id, name, code)
            self._enqueue(run_id, name, method, payload, error=code, state="dead")
            return None
        log.warning("Slack %s for run %s (%s) failed after retries (%s); queued in the outbox",
                    method, run_id, name, code)
        self._enqueue(run_id, name, method, payload, error=code)
        return None

    def _enqueue(self, run_id: str, name: str, method: str, payload: dict[str, Any], *,
                 error: str | None = None, state: str = "pending") -> None:
        data = json.dumps(secrets.redact_obj(payload), default=str)
        now = self.now()
        with self.store.transaction() as conn:
            if method == "message" and state == "pending":
                row = conn.execute(
                    f"SELECT id FROM {OUTBOX} WHERE run_id = ? AND name = ? AND method = 'message'"
                    " AND state = 'pending' ORDER BY id DESC LIMIT 1", (run_id, name)).fetchone()
                if row is not None:  # the newest content supersedes what was waiting
                    conn.execute(f"UPDATE {OUTBOX} SET payload = ? WHERE id = ?", (data, row["id"]))
                    return
            conn.execute(
                f"INSERT INTO {OUTBOX}(run_id, name, method, payload, attempts, last_error, state, created_at,"
                " next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, method, data, 1 if error else 0, error, state, now, now + 5 if error else now))

    def pending(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.store.conn().execute(
            f"SELECT * FROM {OUTBOX} WHERE state = 'pending' ORDER BY id")]

    def flush(self, *, force: bool = False) -> int:
        """Send what waits in the outbox: each run's (each thread's) entries oldest first.

        An entry that is not due yet, or fails, holds back the later entries of its own run only;
        other runs' threads go on. Backs off per entry, 5 s doubling to `MAX_BACKOFF`. Returns how
        many entries were sent; a run whose queue empties is reported to `on_recovered` with how
        long its oldest message waited.
        """
        sent = 0
        held: set[str] = set()
        waited: dict[str, float] = {}
        with self._lock:
            for row in self.pending():
                run_id = row["run_id"]
                if run_id in held:
                    continue
                if not force and row["next_at"] > self.now():
                    held.add(run_id)
                    continue
                payload = json.loads(row["payload"])
                try:
                    if row["method"] == "message":
                        self._send_message(run_id, row["name"], payload)
                    else:
                        self.api(row["method"], **payload)
                except (SlackApiError, SlackClientError, URLError, OSError) as exc:
                    code = _error_code(exc)
                    dead = code in PERMANENT_ERRORS
                    attempts = row["attempts"] + 1
                    with self.store.transaction() as conn:
                        conn.execute(
                            f"UPDATE {OUTBOX} SET attempts = ?, last_error = ?, state = ?, next_at = ? WHERE id = ?",
                            (attempts, code, "dead" if dead else "pending",
                             self.now() + min(MAX_BACKOFF, 5.0 * 2 ** min(attempts - 1, 6)), row["id"]))
                    if dead:
                        log.error("Slack refused queued %s for run %s: %s", row["method"], run_id, code)
                        continue
                    held.add(run_id)
                    continue
                with self.store.transaction() as conn:
                    conn.execute(f"UPDATE {OUTBOX} SET state = 'sent', attempts = ? WHERE id = ?",
                                 (row["attempts"] + 1, row["id"]))
                waited[run_id] = max(waited.get(run_id, 0.0), self.now() - row["created_at"])
                sent += 1
        if self.on_recovered:
            for run_id, seconds in waited.items():
                if run_id not in held and not self._run_pending(run_id):
                    self.on_recovered(run_id, seconds)
        return sent


class OutboxWorker(threading.Thread):
    """Flushes the outbox every `interval` seconds until `stop()`, while it holds `lease`.

    With replicas on one store every one runs a worker, but only the holder of the store's
    `slack-outbox` lease (`bot.engine.leases`) drains: two drainers would both read the same pending
    row and post it twice. When the holder dies its lease runs out and another replica's worker
    takes over at its next turn.
    """

    def __init__(self, poster: Poster, interval: float = 5.0, *, lease: Any = None) -> None:
        super().__init__(name="slack-outbox", daemon=True)
        self.poster = poster
        self.interval = interval
        self.lease = lease
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.lease is None or self.lease.acquire():
                    self.poster.flush()
            except Exception:  # the worker must outlive one bad flush (a store hiccup); it is logged
                log.exception("outbox flush failed; will try again")

    def stop(self) -> None:
        self._stop.set()
        if self.lease is not None:
            try:
                self.lease.release()
            except Exception:  # a store gone at shutdown: the lease expires on its own
                log.warning("could not release the outbox lease; it expires in %.0f s", self.lease.seconds)
