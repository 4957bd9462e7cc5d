"""The deploy files are what docs/deploy.md says they are, without a Docker daemon.

- `Dockerfile` (parsed with dockerfile-parse): a non-root USER before the ENTRYPOINT, the PostgreSQL
  client major pinned by `ARG PG_MAJOR`, no anonymous VOLUME (see the test); its build stage copies all a
  wheel needs (built here from exactly those paths); its HEALTHCHECK one-liner is run for real
  against `runbook-bot serve --http` on a PostgreSQL store (exit 0), a closed port and a 503 (not 0).
- `compose.yaml`: the bot's environment selects the PostgreSQL store of the `postgres` service
  (through `bot.config.store_location`), which it waits for healthy.
- `deploy/app-platform.yaml`: valid against the AppSpec schema of the vendored DigitalOcean
  contract, every key declared there; `deploy/ecs-task-definition.json`: valid input for botocore's
  RegisterTaskDefinition model, secrets only by `valueFrom`.
- Every environment variable the docs and these files set is one the bot (or a library it hands the
  environment to) reads, so they cannot drift from `bot/`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import botocore.credentials
import botocore.session
import jsonschema
import pytest
import requests
import yaml
from botocore.validate import validate_parameters
from dockerfile_parse import DockerfileParser

from bot import config
from bot.engine.store_faults import StoreFault
from bot.engine.store_placement import check_durable
from tests.fixtures import do_contract
from tests.fixtures.slack import BOT_TOKEN, SIGNING_SECRET, wait_for

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
APP_SPEC = ROOT / "deploy" / "app-platform.yaml"
ECS_TASK = ROOT / "deploy" / "ecs-task-definition.json"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
ENV_EXAMPLE = ROOT / ".env.example"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")
# Looks like a credential: such a variable is never given a value in a committed file.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|_KEY|_DB$|DATABASE_URL")
# Upper-case words docs/deploy.md quotes that are Dockerfile instructions, not variables.
DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                       "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


# -- the Dockerfile ----------------------------------------------------------------------------------

def _instructions() -> list[dict]:
    return [i for i in DockerfileParser(path=str(DOCKERFILE)).structure if i["instruction"] != "COMMENT"]


def _stages() -> list[list[dict]]:
    """The instructions of each stage, a stage starting at its FROM."""
    stages: list[list[dict]] = []
    for ins in _instructions():
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _final(name: str) -> list[str]:
    return [i["value"] for i in _stages()[-1] if i["instruction"] == name]


def _healthcheck_command() -> str:
    """The HEALTHCHECK's command as the shell form runs it (`/bin/sh -c COMMAND`)."""
    (value,) = _final("HEALTHCHECK")
    options, sep, command = value.partition(" CMD ")
    assert sep and all(o.startswith("--") for o in options.split()), f"Dockerfile: HEALTHCHECK: {value!r}"
    return command.strip()


def _env_defaults() -> dict[str, str]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    return dict(parser.envs)


def test_the_image_runs_as_a_non_root_user_from_before_the_entrypoint():
    final = _stages()[-1]
    names = [i["instruction"] for i in final]
    users = [(n, i["value"].strip()) for n, i in enumerate(final) if i["instruction"] == "USER"]
    start = min(n for n, name in enumerate(names) if name in ("ENTRYPOINT", "CMD"))
    assert users, "Dockerfile: no USER in the final stage (it would run as root)"
    index, user = users[-1]
    assert index < start, "Dockerfile: the last USER comes after ENTRYPOINT/CMD"
    assert user.split(":")[0] not in ("root", "0"), f"Dockerfile: USER {user}"
    # the user is one the image creates
    assert any(re.search(rf"useradd\b.*\b{re.escape(user)}\b", v) for v in _final("RUN")), user


def test_the_entrypoint_serves_http_on_the_exposed_port_and_declares_no_anonymous_volume():
    assert json.loads(_final("ENTRYPOINT")[-1]) == ["runbook-bot", "serve", "--http"]
    env = _env_defaults()
    assert _final("EXPOSE") == [env["PORT"]] == ["3000"]  # $PORT set: listens on 0.0.0.0 (default_host)
    # A VOLUME would make the state dir a mount point everywhere, and on Fargate or Kubernetes such an
    # anonymous volume dies with the task: the ephemeral-disk check (store_placement) would take it for
    # a real volume and let a SQLite store start where it will be lost. The operator mounts one instead.
    assert _final("VOLUME") == []


def test_the_postgresql_client_major_is_pinned_by_a_build_arg():
    args = dict(a.split("=", 1) for a in _final("ARG") if "=" in a)
    assert "PG_MAJOR" in args, "Dockerfile: no ARG PG_MAJOR=<major> in the final stage"
    assert args["PG_MAJOR"].isdigit() and int(args["PG_MAJOR"]) >= 16, args["PG_MAJOR"]
    run = " ".join(_final("RUN"))
    assert "postgresql-client-${PG_MAJOR}" in run
    assert "pgdg" in run  # Debian's own client is one fixed major: the PGDG repository has them all
    # the build checks the tools it got are that major, where bot/platforms/postgres/tools.py looks
    assert '"/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version' in run


def test_the_healthcheck_asks_healthz_with_python_not_curl():
    command = _healthcheck_command()
    assert shlex.split(command)[:2] == ["python", "-c"] and "/healthz" in command and "curl" not in command


def test_the_build_stage_copies_everything_a_wheel_needs(tmp_path):
    build = _stages()[0]
    context = tmp_path / "context"
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    for ins in build:
        if ins["instruction"] != "COPY" or ins["value"].startswith("--from"):
            continue
        *sources, dest = ins["value"].split()
        for source in sources:
            assert source not in ignored, f".dockerignore excludes {source}, which the Dockerfile copies"
            target = context / (dest.rstrip("/") + "/" + source if dest.endswith("/") else dest).lstrip("./")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    out = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(context)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    names = zipfile.ZipFile(next(out.glob("runbook_bot-*.whl"))).namelist()
    assert "bot/cli.py" in names and "bot/runbooks/demo.yaml" in names
    assert any(n.startswith("bot/templates/slack/") for n in names)


def test_dockerignore_keeps_local_state_and_tooling_out_of_the_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".tools", ".git", ".pytest_cache", "state", "*.sqlite", ".env"} <= ignored


# -- the HEALTHCHECK, run for real -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_healthcheck(port: int) -> subprocess.CompletedProcess:
    """The Dockerfile's command exactly, as Docker runs a shell-form HEALTHCHECK, with `python` on PATH."""
    env = {**os.environ, "PORT": str(port),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["/bin/sh", "-c", _healthcheck_command()], env=env, capture_output=True, text=True,
                          timeout=30)


def test_the_healthcheck_passes_against_the_served_bot_on_a_postgresql_store(slack_api, pg_store_url, tmp_path):
    port = _free_port()
    entrypoint = json.loads(_final("ENTRYPOINT")[-1])
    assert entrypoint[0] == "runbook-bot"
    # the entrypoint as the image runs it, on $PORT; loopback only here (in the image $PORT means 0.0.0.0)
    argv = [sys.executable, "-m", "bot", *entrypoint[1:], "--host", "127.0.0.1"]
    env = {**os.environ, "PORT": str(port), "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.base_url, "RUNBOOK_BOT_STATE_DIR": str(tmp_path / "state"),
           "RUNBOOK_BOT_DB": pg_store_url, "PYTHONPATH": str(ROOT),
           # as on ECS: an ephemeral platform, where only a PostgreSQL store may start
           "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/test"}
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def up():
            assert proc.poll() is None, proc.stdout.read()
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except requests.ConnectionError:
                return None
        assert wait_for(up, timeout=60, message="serve --http up").status_code == 200
        check = _run_healthcheck(port)
        assert check.returncode == 0, check.stdout + check.stderr
        assert not (tmp_path / "state" / "runbook-bot.sqlite").exists()  # the store is the PostgreSQL one
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_the_healthcheck_fails_on_a_closed_port():
    port = _free_port()  # bound and released: nothing listens there
    check = _run_healthcheck(port)
    assert check.returncode != 0 and "Connection refused" in check.stderr, check.stderr


def test_the_healthcheck_fails_when_healthz_answers_503():
    class Unhealthy(BaseHTTPRequestHandler):
        def do_GET(self):  # what /healthz answers when the store is down
            self.send_response(503 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b'{"store": {"ok": false}}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check = _run_healthcheck(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert check.returncode != 0 and "503" in check.stderr, check.stderr


# -- compose.yaml ------------------------------------------------------------------------------------

def _interpolate(value: str, env: dict[str, str]) -> str:
    """compose's `${NAME}` / `${NAME:-default}` substitution (the forms compose.yaml uses)."""
    def one(match: re.Match) -> str:
        name, default = match.group(1), match.group(3) or ""
        return env.get(name) or default
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, value)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_interpolated_names() -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))


def test_compose_starts_the_bot_on_the_postgres_service_once_it_is_healthy(monkeypatch):
    compose = _compose()
    bot, postgres = compose["services"]["bot"], compose["services"]["postgres"]
    assert postgres["image"].split(":")[0] == "postgres" and postgres["image"].split(":")[1].startswith("16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not the container's file system
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    state = {v.split(":")[1]: v.split(":")[0] for v in bot["volumes"]}
    assert state[_env_defaults()["RUNBOOK_BOT_STATE_DIR"]] in compose["volumes"]  # the key survives a rebuild
    assert (ROOT / bot["build"]["context"] / "Dockerfile").is_file() and "3000:3000" in bot["ports"]

    env = {k: _interpolate(str(v), {}) for k, v in bot["environment"].items()}
    pg_env = {k: _interpolate(str(v), {}) for k, v in postgres["environment"].items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    where = config.store_location()  # the bot's own choice of store from that environment
    assert where.startswith("postgresql://"), where
    url = urlsplit(where)
    assert url.hostname in compose["services"] and url.port == 5432
    assert (url.username, url.password, url.path.lstrip("/")) == \
        (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])


def test_compose_takes_slack_tokens_from_an_uncommitted_env_file():
    bot = _compose()["services"]["bot"]
    assert bot["env_file"] == ".env" and ENV_EXAMPLE.is_file()
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert not any(SECRET_NAME.search(k) for k in bot["environment"] if k != "RUNBOOK_BOT_DB")
    names = _env_example_names()
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "POSTGRES_PASSWORD"} <= names
    # set, not commented out: the PostgreSQL store refuses to start without it (Store.configured)
    assert re.search(r"^RUNBOOK_BOT_FINGERPRINT_KEY=\S+", ENV_EXAMPLE.read_text(), flags=re.M)


def _env_example_names() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))


# -- the App Platform spec ---------------------------------------------------------------------------

def _undeclared_keys(instance, schema_node, where: str = "") -> list[str]:
    """Keys of `instance` that the schema (through $ref/allOf) does not declare, recursively."""
    node = do_contract.resolve(schema_node)
    if isinstance(instance, list):
        return [k for n, item in enumerate(instance) for k in _undeclared_keys(item, node.get("items", {}), f"{where}[{n}]")]
    if not isinstance(instance, dict):
        return []
    props = do_contract.properties(node)
    unknown = [f"{where}.{k}" for k in instance if k not in props]
    return unknown + [k for key, value in instance.items() if key in props
                      for k in _undeclared_keys(value, props[key], f"{where}.{key}")]


def _app_spec() -> dict:
    return yaml.safe_load(APP_SPEC.read_text())


def test_the_app_spec_is_valid_against_the_contracts_app_spec_schema():
    spec = _app_spec()
    root = {"components": do_contract.spec()["components"], "$ref": "#/components/schemas/app_spec"}
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft4Validator(root).iter_errors(spec)]
    assert not errors, f"{APP_SPEC.name}: {errors}"
    # the contract's schemas allow unknown keys, so a misspelt one would pass silently: not here
    assert not _undeclared_keys(spec, do_contract.schema("app_spec")), _undeclared_keys(spec, do_contract.schema("app_spec"))


def test_the_undeclared_key_check_catches_a_misspelt_key():
    spec = _app_spec()
    spec["services"][0]["health_check"]["http_pth"] = "/healthz"
    assert _undeclared_keys(spec, do_contract.schema("app_spec")) == [".services[0].health_check.http_pth"]


def test_the_app_spec_builds_the_image_health_checks_it_and_binds_the_managed_database():
    spec = _app_spec()
    (service,) = spec["services"]
    assert (ROOT / service["dockerfile_path"]).is_file()
    assert service["http_port"] == int(_final("EXPOSE")[0]) and service["health_check"]["http_path"] == "/healthz"
    (database,) = spec["databases"]
    assert database["engine"] == "PG"
    envs = {e["key"]: e for e in service["envs"]}
    assert envs["RUNBOOK_BOT_DB"]["value"] == f"${{{database['name']}.DATABASE_URL}}"
    assert envs["RUNBOOK_BOT_FS"]["value"] == "ephemeral"  # bot/engine/store_placement.py's marker
    for key, env in envs.items():
        if SECRET_NAME.search(key) and key != "RUNBOOK_BOT_DB":
            assert env.get("type") == "SECRET" and "value" not in env, f"{APP_SPEC.name}: envs: {key}"


def test_without_its_database_binding_the_app_spec_refuses_a_sqlite_store():
    # what RUNBOOK_BOT_FS=ephemeral is there for: a file on the component's own disk would be lost
    (service,) = _app_spec()["services"]
    env = {e["key"]: e.get("value", "") for e in service["envs"] if e["key"] != "RUNBOOK_BOT_DB"}
    with pytest.raises(StoreFault, match="RUNBOOK_BOT_FS=ephemeral"):
        check_durable("/app/state/runbook-bot.sqlite", env)  # not on a mounted volume
    check_durable("/app/state/runbook-bot.sqlite", {**env, "RUNBOOK_BOT_EPHEMERAL_OK": "1"})  # the trial switch


# -- the Procfile (Heroku) ---------------------------------------------------------------------------

def test_the_procfile_runs_the_images_command_on_herokus_port():
    processes = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    entrypoint = " ".join(json.loads(_final("ENTRYPOINT")[-1]))
    assert processes["web"] == f"{entrypoint} --port $PORT"  # HTTP, as the image
    assert processes["worker"] == "runbook-bot serve"  # Socket Mode: no public URL


# -- the ECS task definition -------------------------------------------------------------------------

def _task() -> dict:
    return json.loads(ECS_TASK.read_text())


def test_the_task_definition_is_valid_register_task_definition_input():
    model = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    validate_parameters(_task(), model.input_shape)  # raises on an unknown key or a wrong type
    assert _task()["requiresCompatibilities"] == ["FARGATE"] and _task()["networkMode"] == "awsvpc"


def test_the_task_definition_health_checks_healthz_and_logs_to_cloudwatch():
    (container,) = _task()["containerDefinitions"]
    assert container["healthCheck"]["command"] == ["CMD-SHELL", _healthcheck_command()]  # the tested one
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert [p["containerPort"] for p in container["portMappings"]] == [int(_final("EXPOSE")[0])]


def test_the_task_definition_holds_no_secret_value():
    (container,) = _task()["containerDefinitions"]
    plain = {e["name"] for e in container["environment"]}
    assert not {n for n in plain if SECRET_NAME.search(n)}, plain
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "RUNBOOK_BOT_DB"} <= set(secrets)
    for name, source in secrets.items():
        assert re.match(r"^arn:aws:(secretsmanager|ssm):", source), f"{ECS_TASK.name}: {name}: {source}"
    text = ECS_TASK.read_text()
    assert not re.search(r"xox[abp]-|xapp-|postgres(ql)?://", text)


# -- every variable the docs and files set is one something reads --------------------------------------

def _names_read_by_the_bot() -> set[str]:
    """Environment names in bot/: `*.get("X")`, `environ["X"]`, and module constants naming variables
    (store_placement's MARKERS, OVERRIDE, ...)."""
    names: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("get", "getenv", "get_list", "get_map", "pop", "setdefault"):
                    names.add(node.args[0].value)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                holder = node.value
                if (holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", "")) == "environ":
                    names.add(node.slice.value)
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in stmt.targets):
                names |= {c.value for c in ast.walk(stmt.value) if isinstance(c, ast.Constant)}
    return {n for n in names if isinstance(n, str) and ENV_NAME.match(n)}


def _names_read_by_libraries() -> set[str]:
    """What the bot hands on to others: botocore's credential chain and config, and CPython's own."""
    names = {v for v in vars(botocore.credentials.EnvProvider).values() if isinstance(v, str) and ENV_NAME.match(v)}
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES
    names |= {spec[1] for spec in BOTOCORE_DEFAUT_SESSION_VARIABLES.values() if isinstance(spec[1], str)}
    return names | {"PYTHONUNBUFFERED"}  # CPython: unbuffered stdout, so logs reach the platform at once


def _names_set_by_deploy_files() -> dict[str, set[str]]:
    compose_bot = _compose()["services"]["bot"]
    (container,) = _task()["containerDefinitions"]
    doc = DEPLOY_DOC.read_text()
    doc_names = {span for span in re.findall(r"`([^`\n]+)`", doc) if ENV_NAME.match(span)}
    doc_names |= set(re.findall(r"(?<![\w-])([A-Z][A-Z0-9_]*[A-Z0-9])=", doc))  # NAME=value, in code and prose
    build_args = {a.split("=", 1)[0] for a in DockerfileParser(path=str(DOCKERFILE)).args}
    # compose's, docker build's and Docker's own words, not the bot's
    not_the_bots = _compose_interpolated_names() | build_args | DOCKER_INSTRUCTIONS
    return {
        "Dockerfile ENV": set(_env_defaults()),
        "compose.yaml": set(compose_bot["environment"]),
        ".env.example": _env_example_names() - not_the_bots,
        APP_SPEC.name: {e["key"] for s in _app_spec()["services"] for e in s["envs"]},
        ECS_TASK.name: {e["name"] for e in container["environment"] + container["secrets"]},
        "docs/deploy.md": doc_names - not_the_bots,
    }


def test_every_variable_the_deploy_files_set_is_one_that_is_read():
    read = _names_read_by_the_bot() | _names_read_by_libraries()
    drift = {source: sorted(names - read) for source, names in _names_set_by_deploy_files().items() if names - read}
    assert not drift, f"set but read by nothing: {drift}"


def test_the_variable_extraction_sees_what_the_files_set():
    # the drift test above passes vacuously if nothing is extracted: each source names what it must
    found = _names_set_by_deploy_files()
    assert all(found.values()), found
    assert {"RUNBOOK_BOT_EPHEMERAL_OK", "DATABASE_URL", "RUNBOOK_BOT_FS", "SLACK_BOT_TOKEN"} <= found["docs/deploy.md"]
    read = _names_read_by_the_bot()
    assert {"RUNBOOK_BOT_EPHEMERAL_OK", "DYNO", "DATABASE_URL", "PORT", "SLACK_SIGNING_SECRET"} <= read
    assert "RUNBOOK_BOT_STORE" not in read  # a name the bot does not read
