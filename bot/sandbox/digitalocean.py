"""A stateful stand-in for the parts of DigitalOcean's API the rehearsal world and the tests use.

Prism (in the tests) checks every request against DigitalOcean's published contract but remembers
nothing; flows that change an app spec and read it back need memory, so they run against this
stand-in. It serves, on loopback:

- App Platform apps: `GET /v2/apps`, `GET/PUT /v2/apps/{id}`; like App Platform it encrypts SECRET
  values on submission (`EV[1:...]`), returns them encrypted, and keeps an encrypted value sent back.
- the active deployment's run-time logs: `GET /v2/apps/{id}/components/{name}/logs` answers links
  to archives the stand-in serves itself (`/archives/...`), lines from `log_lines(app, start, end)`.
- managed databases: `GET /v2/databases`, `GET /v2/databases/{id}`, `GET /v2/databases/{id}/pools`.

    do = DigitalOceanStandIn().start()
    app_id = do.add_app({"name": "api-staging", "services": [...]})
    do.add_database("api-staging-pg", direct=("127.0.0.1", 5432), pool=("127.0.0.1", 6432), ...)
    os.environ.update(do.settings())      # DIGITALOCEAN_API_URL + the stand-in's token
    do.recorded                           # [Recorded(method, path, query, body), ...]

`tests/test_sandbox_do_contract.py` replays every kind of request it answers against Prism and
checks its answers against the contract's response schemas, so it cannot drift from the real API.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "do-standin-token-0000"
LogLines = Callable[[str, float, float], Iterable[str]]
ARCHIVE_SECONDS = 6 * 3600  # one archive link per six hours of history


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class DigitalOceanStandIn:
    """The stand-in's memory, and its HTTP server (`start`/`stop`)."""

    def __init__(self, *, log_lines: LogLines | None = None, clock: Callable[[], float] | None = None,
                 history_start: float = 0.0) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.databases: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, list[dict[str, Any]]] = {}
        self.recorded: list[Recorded] = []
        self.lock = threading.Lock()
        self.url = ""
        self.log_lines = log_lines
        self.clock = clock
        self.history_start = history_start
        self._server: ThreadingHTTPServer | None = None

    # -- state ------------------------------------------------------------------------------------
    def add_app(self, spec: dict[str, Any]) -> str:
        app_id = str(uuid.uuid4())
        self.apps[app_id] = {"id": app_id, "spec": _encrypt(copy.deepcopy(spec)),
                             "created_at": "2026-11-01T00:00:00Z", "region": {"slug": "nyc"},
                             "active_deployment": {"id": str(uuid.uuid4()), "phase": "ACTIVE"}}
        return app_id

    def spec(self, app_id: str) -> dict[str, Any]:
        return copy.deepcopy(self.apps[app_id]["spec"])

    def add_database(self, name: str, *, direct: tuple[str, int], user: str, password: str, database: str,
                     pool: tuple[str, int] | None = None, pool_mode: str = "transaction", version: str = "15",
                     ssl: bool = False, pool_database: str | None = None) -> str:
        """A cluster whose `connection` is `direct`; `pool` (PgBouncer) becomes its one connection pool."""
        ident = str(uuid.uuid4())

        def conn(host: str, port: int, db: str) -> dict[str, Any]:
            return {"uri": f"postgresql://{user}:{password}@{host}:{port}/{db}", "database": db, "host": host,
                    "port": port, "user": user, "password": password, "ssl": ssl}

        self.databases[ident] = {"id": ident, "name": name, "engine": "pg", "version": version, "num_nodes": 1,
                                 "size": "db-s-1vcpu-1gb", "region": "nyc3", "status": "online",
                                 "created_at": "2026-11-01T00:00:00Z", "connection": conn(*direct, database),
                                 "private_connection": conn(*direct, database), "users": [], "db_names": [database]}
        self.pools[ident] = []
        if pool is not None:  # like DigitalOcean's, the pool's URL names the pool, not the database
            self.pools[ident].append({"name": f"{database}-pool", "mode": pool_mode, "size": 10, "db": database,
                                      "user": user, "connection": conn(pool[0], pool[1], pool_database or f"{database}-pool")})
        return ident

    def settings(self) -> dict[str, str]:
        """The environment that points the product's DigitalOcean client at this stand-in."""
        return {"DIGITALOCEAN_API_URL": self.url, "DIGITALOCEAN_TOKEN": TOKEN}

    def use(self, monkeypatch: Any) -> None:
        for name, value in self.settings().items():
            monkeypatch.setenv(name, value)

    # -- server -----------------------------------------------------------------------------------
    def start(self) -> DigitalOceanStandIn:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self._server.serve_forever, name="do-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- routes -----------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        if segments[:2] == ["v2", "apps"]:
            return self._apps(method, segments[2:], query, body)
        if segments[:2] == ["v2", "databases"] and method == "GET":
            return self._databases(segments[2:])
        return 404, {"id": "not_found", "message": "no such route"}

    def _apps(self, method: str, rest: list[str], query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if not rest and method == "GET":
            page, per_page = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["20"])[0])
            items = list(self.apps.values())[(page - 1) * per_page: page * per_page]
            more = page * per_page < len(self.apps)
            out: dict[str, Any] = {"links": {"pages": {"next": f"{self.url}/v2/apps?page={page + 1}"}} if more else {},
                                   "meta": {"total": len(self.apps)}}
            if items:
                out["apps"] = copy.deepcopy(items)
            return 200, out
        app = self.apps.get(rest[0]) if rest else None
        if app is None:
            return 404, {"id": "not_found", "message": "The resource you were accessing could not be found."}
        if len(rest) == 1 and method == "GET":
            return 200, {"app": copy.deepcopy(app)}
        if len(rest) == 1 and method == "PUT":
            if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
                return 400, {"id": "bad_request", "message": "spec is required"}
            app["spec"] = _encrypt(copy.deepcopy(body["spec"]))
            return 200, {"app": copy.deepcopy(app)}
        if len(rest) == 4 and rest[1] == "components" and rest[3] == "logs" and method == "GET":
            return 200, self._log_links(app, rest[2])
        return 405, {"id": "method_not_allowed", "message": method}

    def _log_links(self, app: dict[str, Any], component: str) -> dict[str, Any]:
        now = self.clock() if self.clock else 0.0
        urls = []
        start = self.history_start
        while start < now:
            urls.append(f"{self.url}/archives/{app['id']}/{component}/{int(start)}.log?X-Amz-Signature=standin")
            start += ARCHIVE_SECONDS
        return {"live_url": f"{self.url}/live/{app['id']}/{component}", "historic_urls": urls}

    def archive(self, path: str) -> bytes | None:
        parts = [s for s in path.split("/") if s]  # archives/<app id>/<component>/<start>.log
        if len(parts) != 4 or parts[0] != "archives" or parts[1] not in self.apps or self.log_lines is None:
            return None
        start = float(parts[3].removesuffix(".log"))
        end = min(start + ARCHIVE_SECONDS, self.clock() if self.clock else start + ARCHIVE_SECONDS)
        name = self.apps[parts[1]]["spec"].get("name", "")
        return "".join(line + "\n" for line in self.log_lines(name, start, end)).encode()

    def _databases(self, rest: list[str]) -> tuple[int, Any]:
        if not rest:
            return 200, {"databases": copy.deepcopy(list(self.databases.values()))}
        found = self.databases.get(rest[0])
        if found is None:
            return 404, {"id": "not_found", "message": "The resource you were accessing could not be found."}
        if len(rest) == 1:
            return 200, {"database": copy.deepcopy(found)}
        if rest[1:] == ["pools"]:
            return 200, {"pools": copy.deepcopy(self.pools.get(rest[0], []))}
        return 404, {"id": "not_found", "message": "no such route"}


def _encrypt(spec: Any) -> Any:
    if isinstance(spec, dict):
        if spec.get("type") == "SECRET" and "value" in spec and not str(spec["value"]).startswith("EV["):
            spec["value"] = "EV[1:" + hashlib.sha256(str(spec["value"]).encode()).hexdigest()[:24] + "]"
        for value in spec.values():
            _encrypt(value)
    elif isinstance(spec, list):
        for value in spec:
            _encrypt(value)
    return spec


def _handler(standin: DigitalOceanStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # the console belongs to the run
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            if parts.path.startswith("/archives/"):  # signed links: no token, like Spaces' presigned URLs
                data = standin.archive(parts.path)
                return self._send(200, data, "text/plain") if data is not None else self._send(
                    404, {"id": "not_found", "message": "no such archive"})
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            query = parse_qs(parts.query)
            with standin.lock:
                standin.recorded.append(Recorded(method, parts.path, query, copy.deepcopy(body)))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"id": "unauthorized", "message": "Unable to authenticate you"})
            with standin.lock:
                status, out = standin.route(method, parts.path, query, body)
            return self._send(status, out)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._handle("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

    return Handler
