"""The rehearsal world: seed 000's two platforms, its database and its zone, standing up on loopback.

    with World.up() as world:           # no credentials, nothing outside the world is touched
        world.params                    # {"env": "staging", "new_ip": "127.0.0.1", ...} for the shipped runbook
        world.settings                  # the process environment that points every adapter at the world

What stands where:

- AWS: moto in server mode (`ThreadedMotoServer`, real HTTP) reached by the real boto3 clients: the
  ECS service `api` on cluster `staging` whose task definition sets `WORKERS=4` and starts
  `uvicorn ... --workers ${WORKERS:-1}`, with secrets from Secrets Manager and SSM; the S3 bucket of
  the model object; the Route 53 zone `example.com.` whose `api` record has TTL 3600; the old ALB's
  CloudWatch metrics and the calling service's log group, history written for the whole rehearsal.
- DigitalOcean: the product's stand-in (`bot.sandbox.digitalocean`): the App Platform app without
  `WORKERS`, the managed database cluster (direct connection and a transaction-mode pool), the app's
  log archives. Spaces is a second moto server in its own process (its own buckets), without the model.
- PostgreSQL: the local server (or pgserver), with PgBouncer in transaction mode in front when installed.
- DNS: a local authoritative server (dnslib) answering from moto's Route 53 record sets.
- The new service: an HTTPS server on loopback (a certificate from the world's own CA) that answers
  its health check until the wedge, then 504s as App Platform's edge does for a hung component.

History (`Timeline`): the old side is healthy before the cutover. The new side is healthy, then at
`wedge_at` it wedges: its log volume collapses, the edge's 504s rise, the service's own 5xx stay zero.
Times are on the rehearsal clock, which starts some days in the past so that all history is in the
past for the APIs that check (Logs rejects events from the future).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bot.sandbox.demo import Sandbox
from bot.sandbox.digitalocean import DigitalOceanStandIn
from bot.sandbox.dns import LocalDnsServer, route53_source
from bot.platforms.sandbox import aws
from bot.platforms.sandbox.postgres import PgBouncer, Server, find_server, free_port

ENV = "staging"
# Secrets of the world are random: a secret is masked wherever it appears, so a common word would
# mask every name that contains it.
PASSWORD = "pw-" + uuid.uuid4().hex
SECRET_KEY = "sk-" + uuid.uuid4().hex
RECORD = "api.example.com."
OLD_IP = "192.0.2.10"
MODEL_KEY = "models/projection/latest.bin"
EVERY = 600.0
RUN_COMMAND = "uvicorn app.main:app --host 0.0.0.0 --port 8080 --workers ${WORKERS:-1}"


@dataclass
class Timeline:
    """The world's history on the rehearsal clock (epoch seconds)."""

    start: float            # the rehearsal clock's first reading
    history_from: float     # where metric history begins (a day before the start)
    wedge_at: float         # the new side hangs from here on
    end: float              # the last moment the world has history for

    @classmethod
    def around(cls, now: float) -> Timeline:
        start = (now - 3 * 86400) // EVERY * EVERY
        # The runbook waits a day for caches, switches, then watches a day: the wedge comes about
        # three hours after the switch, as in the seed ("a few hours later").
        return cls(start=start, history_from=start - 86400, wedge_at=start + 86400 + 3 * 3600,
                   end=start + 3 * 86400 - 3600)

    def wedged(self, at: float) -> bool:
        return at >= self.wedge_at


class RehearsalClock:
    """Accelerated time: a short sleep (a wait's slice, under a second) is worth `factor` times its length.

    Longer sleeps (retry backoffs) pass at face value. `on_advance(now)` runs after each move (the
    rehearsal ticks the watch there), so a day-long wait with a ten-minute watch takes 144 moves.
    """

    def __init__(self, start: float, *, factor: float = 3000.0) -> None:
        self.t = float(start)
        self.factor = factor
        self.on_advance: list[Any] = []
        self._lock = threading.RLock()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += max(0.0, seconds * self.factor if seconds < 1 else seconds)
            for hook in list(self.on_advance):
                hook(self.t)
        time.sleep(0)  # let other threads (servers) run


@dataclass
class World:
    timeline: Timeline
    clock: RehearsalClock
    aws_url: str
    spaces_url: str
    do: DigitalOceanStandIn
    dns: LocalDnsServer
    pg: Server
    pgbouncer: PgBouncer | None
    new_port: int
    zone_id: str
    databases: dict[str, str]
    settings: dict[str, str]
    folder: Path
    rows: int = 0
    _stops: list[Any] = field(default_factory=list)

    # -- standing up --------------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def up(cls, *, now: float | None = None) -> Iterator[World]:
        stack = contextlib.ExitStack()
        with stack:
            world = cls._build(stack, now or time.time())
            saved = {name: os.environ.get(name) for name in world.settings}
            os.environ.update(world.settings)
            stack.callback(_restore, saved)
            yield world

    @classmethod
    def _build(cls, stack: contextlib.ExitStack, now: float) -> World:
        from moto.server import ThreadedMotoServer

        timeline = Timeline.around(now)
        clock = RehearsalClock(timeline.start)
        folder = Path(tempfile.mkdtemp(prefix="rb-rehearsal-"))
        stack.callback(_rmtree, folder)
        aws_env = {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": ""}
        os.environ.update({k: v for k, v in aws_env.items() if v})
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        aws_url = f"http://{host}:{port}"
        spaces_url = _spaces_server(stack)

        pg = find_server()
        stack.callback(pg.drop_created)
        suffix = uuid.uuid4().hex[:8]
        databases = {"old": pg.create(f"rb_rehearsal_old_{suffix}"), "new": pg.create(f"rb_rehearsal_new_{suffix}")}
        # PgBouncer runs as its own user; an embedded server's private socket folder is closed to it.
        bouncer = None if pg.host.startswith("/") else PgBouncer.start(pg, {f"{databases['new']}-pool": databases["new"]})
        if bouncer is not None:
            stack.callback(bouncer.stop)

        dns = LocalDnsServer()
        dns.start()
        stack.callback(dns.stop)
        do = DigitalOceanStandIn(log_lines=lambda app, a, b: _app_log_lines(timeline, a, b), clock=clock.now,
                                 history_start=timeline.history_from).start()
        stack.callback(do.stop)
        new_port, ca_file = _new_service(stack, folder, timeline, clock)
        demo = stack.enter_context(Sandbox())  # runbooks/demo.yaml's two HTTP services

        world = cls(timeline=timeline, clock=clock, aws_url=aws_url, spaces_url=spaces_url, do=do, dns=dns, pg=pg,
                    pgbouncer=bouncer, new_port=new_port, zone_id="", databases=databases, settings={},
                    folder=folder)
        world._seed_aws()
        world._seed_spaces()
        world._seed_digitalocean()
        world.rows = _seed_database(pg, databases["old"])
        dns.use_source(route53_source(world.client("route53"), world.zone_id))
        rds_host = world.client("rds").describe_db_instances(DBInstanceIdentifier=f"api-{ENV}")[
            "DBInstances"][0]["Endpoint"]["Address"]
        world.settings = {
            **aws_env, "AWS_ENDPOINT_URL": aws_url, **do.settings(), "SPACES_ENDPOINT_URL": spaces_url,
            "SPACES_ACCESS_KEY_ID": "rehearsal", "SPACES_SECRET_ACCESS_KEY": SECRET_KEY,
            "RUNBOOK_BOT_NAMESERVERS": dns.address, "RUNBOOK_BOT_PG_HOSTADDR": f"{rds_host}={pg.host}",
            **demo.env, "OLD_DB_PASSWORD": PASSWORD, "NEW_DB_PASSWORD": PASSWORD, "REQUESTS_CA_BUNDLE": str(ca_file),
        }
        if pg.bin_dir:
            world.settings["PG_BIN_DIR"] = pg.bin_dir
        world.settings = {k: v for k, v in world.settings.items() if v}
        return world

    def client(self, service: str, **kwargs: Any) -> Any:
        return aws.client(service, endpoint_url=self.aws_url, secret_key=SECRET_KEY, **kwargs)

    def spaces(self) -> Any:
        return aws.client("s3", endpoint_url=self.spaces_url, secret_key=SECRET_KEY)

    @property
    def params(self) -> dict[str, str]:
        """The shipped runbook's parameters for this world."""
        return {"env": ENV, "new_ip": "127.0.0.1", "new_port": str(self.new_port), "db_name": self.databases["new"]}

    # -- the seed's traps ---------------------------------------------------------------------------
    def _seed_aws(self) -> None:
        sm, ssm, ecs = self.client("secretsmanager"), self.client("ssm"), self.client("ecs")
        secret_arn = sm.create_secret(Name=f"{ENV}/api/openai", SecretString="sk-rehearsal-not-a-real-key")["ARN"]
        ssm.put_parameter(Name=f"/{ENV}/api/sentry_dsn", Value="https://rehearsal@sentry.invalid/1",
                          Type="SecureString")
        ecs.create_cluster(clusterName=ENV)
        ecs.register_task_definition(family="api", containerDefinitions=[{
            "name": "api", "image": "registry.invalid/api:7", "memory": 1024, "essential": True,
            "command": ["sh", "-c", RUN_COMMAND],
            "environment": [{"name": "WORKERS", "value": "4"}, {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "MODEL_BUCKET", "value": f"applypass-models-{ENV}"},
                            {"name": "DATABASE_URL", "value": "postgresql://app@api-staging.rds.internal/api"}],
            "secrets": [{"name": "OPENAI_API_KEY", "valueFrom": secret_arn},
                        {"name": "SENTRY_DSN", "valueFrom": f"/{ENV}/api/sentry_dsn"}],
        }])
        ecs.create_service(cluster=ENV, serviceName="api", taskDefinition="api", desiredCount=3)
        self.client("rds").create_db_instance(
            DBInstanceIdentifier=f"api-{ENV}", Engine="postgres", EngineVersion="15.4", DBInstanceClass="db.t3.micro",
            MasterUsername=self.pg.user, MasterUserPassword=PASSWORD, DBName=self.databases["old"],
            Port=self.pg.port, AllocatedStorage=20)
        s3 = self.client("s3")
        s3.create_bucket(Bucket=f"applypass-models-{ENV}")
        s3.put_object(Bucket=f"applypass-models-{ENV}", Key=MODEL_KEY, Body=b"\x00projection-v7" * 512)
        s3.put_object(Bucket=f"applypass-models-{ENV}", Key="models/tokenizer.json", Body=b'{"v": 7}')
        r53 = self.client("route53")
        self.zone_id = r53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
        r53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": [{
            "Action": "CREATE", "ResourceRecordSet": {"Name": RECORD, "Type": "A", "TTL": 3600,
                                                      "ResourceRecords": [{"Value": OLD_IP}]}}]})
        self._seed_history()

    def _seed_history(self) -> None:
        """The old ALB's traffic before the cutover, and the calling service's log (504s after the wedge)."""
        t = self.timeline
        cw, logs = self.client("cloudwatch"), self.client("logs")
        dims = [{"Name": "LoadBalancer", "Value": f"app/api-{ENV}/0123456789abcdef"}]
        points: dict[str, list[tuple[float, float]]] = {"RequestCount": [], "HTTPCode_Target_5XX_Count": []}
        at = t.history_from
        while at < t.end:
            points["RequestCount"].append((at + 60, 5000.0 + (int(at / EVERY) % 4) * 50))
            points["HTTPCode_Target_5XX_Count"].append((at + 60, 0.0))
            at += EVERY
        for name, values in points.items():
            for i in range(0, len(values), 500):
                cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
                    {"MetricName": name, "Dimensions": dims, "Timestamp": datetime.datetime.fromtimestamp(ts, datetime.UTC),
                     "Value": v, "Unit": "Count"} for ts, v in values[i:i + 500]])
        group = f"/ecs/{ENV}/matching"
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="matching/1")
        events, at = [], t.history_from
        while at < t.end:
            wedged = t.wedged(at)
            for i in range(40 if wedged else 2):
                line = ("POST https://api.example.com/answers -> 504 Gateway Timeout" if wedged
                        else "POST https://api.example.com/answers -> 200")
                events.append({"timestamp": int((at + 10 + i) * 1000), "message": line})
            at += EVERY
        for i in range(0, len(events), 5000):
            logs.put_log_events(logGroupName=group, logStreamName="matching/1", logEvents=events[i:i + 5000])

    def _seed_spaces(self) -> None:
        spaces = self.spaces()
        spaces.create_bucket(Bucket=f"applypass-models-{ENV}")
        spaces.put_object(Bucket=f"applypass-models-{ENV}", Key="models/tokenizer.json", Body=b'{"v": 7}')

    def _seed_digitalocean(self) -> None:
        pooled = self.pgbouncer.port if self.pgbouncer else None
        self.do.add_database(f"api-{ENV}-pg", direct=(self.pg.host, self.pg.port), user=self.pg.user,
                             password=PASSWORD, database=self.databases["new"],
                             pool=("127.0.0.1", pooled) if pooled else (self.pg.host, self.pg.port),
                             # without PgBouncer on the machine the "pool" is the server itself
                             pool_database=None if pooled else self.databases["new"])
        pool_url = f"postgresql://{self.pg.user}@127.0.0.1:{pooled or self.pg.port}/{self.databases['new']}-pool"
        self.do.add_app({"name": f"api-{ENV}", "region": "nyc", "services": [{
            "name": f"api-{ENV}", "run_command": RUN_COMMAND, "http_port": 8080, "instance_count": 2,
            "envs": [{"key": "LOG_LEVEL", "value": "info", "scope": "RUN_TIME", "type": "GENERAL"},
                     {"key": "MODEL_BUCKET", "value": f"applypass-models-{ENV}", "scope": "RUN_TIME", "type": "GENERAL"},
                     {"key": "DATABASE_URL", "value": pool_url, "scope": "RUN_TIME", "type": "SECRET"},
                     {"key": "OPENAI_API_KEY", "value": "sk-rehearsal-not-a-real-key", "scope": "RUN_TIME",
                      "type": "SECRET"},
                     {"key": "SENTRY_DSN", "value": "https://rehearsal@sentry.invalid/1", "scope": "RUN_TIME",
                      "type": "SECRET"}]}]})

    # -- what the report reads ----------------------------------------------------------------------
    def record_sets(self) -> list[dict[str, Any]]:
        sets = self.client("route53").list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        return [s for s in sets if s["Type"] not in ("NS", "SOA")]

    def app_env_keys(self) -> list[str]:
        app = next(iter(self.do.apps.values()))
        return sorted(e["key"] for svc in app["spec"].get("services", []) for e in svc.get("envs", []))


def _app_log_lines(timeline: Timeline, start: float, end: float) -> Iterator[str]:
    """The new app's run-time log: ~300 lines per ten minutes, nearly nothing once it has wedged."""
    at = start
    while at < end:
        per = 2 if timeline.wedged(at) else 300
        stamp = datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for i in range(per):
            yield f"api-{ENV} {stamp}.{i:06d}Z INFO matched job request {i}"
        at += EVERY


def _seed_database(pg: Server, dbname: str) -> int:
    """The old database: the tables the matching service uses, with rows and a sequence."""
    rows = 5000
    with pg.connect(dbname) as conn:
        conn.execute("CREATE TABLE jobs (id bigserial PRIMARY KEY, title text NOT NULL, embedding real[])")
        conn.execute("CREATE TABLE answers (id bigserial PRIMARY KEY, job_id bigint REFERENCES jobs(id), body text)")
        conn.execute("INSERT INTO jobs (title, embedding) SELECT 'job ' || g, ARRAY[g * 0.5, g * 0.25]::real[]"
                     f" FROM generate_series(1, {rows}) g")
        conn.execute("INSERT INTO answers (job_id, body) SELECT 1 + g % 5000, md5(g::text)"
                     f" FROM generate_series(1, {rows}) g")
    return rows * 2


def _spaces_server(stack: contextlib.ExitStack) -> str:
    """Spaces: a second moto server in its own process, so its buckets are not S3's."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(_stop, proc)
    url = f"http://127.0.0.1:{port}"
    aws.wait_until_serving(url, proc, what="Spaces stand-in (moto server)")
    return url


def _new_service(stack: contextlib.ExitStack, folder: Path, timeline: Timeline, clock: RehearsalClock) -> tuple[int, Path]:
    """The new side behind App Platform's edge: healthy until the wedge, then the edge's 504."""
    cert, key, ca = _certificates(folder)

    class Edge(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            wedged = timeline.wedged(clock.now())
            body = b'{"ok": false, "error": "upstream timed out"}' if wedged else b'{"ok": true}'
            self.send_response(504 if wedged else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Edge)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="rehearsal-new-service", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    stack.callback(stop)
    return server.server_address[1], ca


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of the world's own and a certificate for 127.0.0.1 and api.example.com signed by it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runbook-bot rehearsal CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=7))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=7)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.example.com"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem", folder / "ca.pem"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _rmtree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


__all__ = ["World", "Timeline", "RehearsalClock", "MODEL_KEY", "RECORD", "json"]
