"""Environment variables from a file: the exports people have, so a matrix can be taken before deploying.

    from bot.platforms import envfile
    env = envfile.read_env(FileTarget(path="exports/heroku.env"))   # SourceEnv
    env.values["WORKERS"].fingerprint()

What a file may be (the shape decides, the extension picks the parser):

- `.env` / anything else: dotenv (python-dotenv's parser: quotes, `export`, comments);
- an App Platform app spec, `doctl apps spec get APP` output (YAML or JSON; `services:` etc., or
  `{spec: ...}` as `doctl apps get -o json` prints it): the run-time envs, as App Platform merges
  app-level and component envs; SECRET values (`EV[...]`) are known by presence only;
- an ECS task definition JSON (`aws ecs describe-task-definition` output, or the bare definition
  with `containerDefinitions`): each container's `environment`, its `secrets` by name (their
  values live in Secrets Manager/SSM), and its command;
- a Heroku `heroku config --json` dump: a flat object of name -> value;
- a Fly `fly.toml`: its `[env]` table (secrets are not in the file), and `[processes]` as commands;
- a JSON/YAML mapping of name -> scalar, or `{env: {...}, command: "..."}`. A JSON/YAML file may also carry `command: "..."` next to `env:`, so the
sandbox can stand for a platform that exposes its start command. Every value is registered with
`bot.secrets` as it is read; nested values are refused with the offending name, not dumped.

`parse_ecs_env_file` reads the stricter format of ECS `environmentFiles` (`NAME=VALUE` per line,
`#` comments, no quoting), which ECS passes to the container verbatim.
"""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from bot import secrets
from bot.platforms import errors
from bot.platforms.envvalue import EnvValue, SourceEnv

PLATFORM = "file"


def _scalar(name: str, value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if value is None:
        return ""
    raise errors.InvalidRequest(PLATFORM, "read", path, f"variable {name!r} is not a scalar")


def parse(text: str, fmt: str, *, path: str = "<text>") -> tuple[dict[str, str], list[str]]:
    """Parse file content; returns ({name: value}, [commands]). `fmt` is dotenv, json or yaml."""
    commands: list[str] = []
    if fmt == "dotenv":
        raw: dict[str, Any] = dict(dotenv_values(stream=io.StringIO(text)))
    else:
        data = _structured(text, fmt, path)
        if data is None:
            data = {}
        if fmt == "toml" and isinstance(data, dict) and not isinstance(data.get("env"), dict):
            data = {**data, "env": {}}  # fly.toml without [env]: no variables (the rest is not env)
        if not isinstance(data, dict):
            raise errors.InvalidRequest(PLATFORM, "read", path, f"expected a {fmt} mapping of names to values")
        if isinstance(data.get("env"), dict):
            command = data.get("command")
            if isinstance(command, list):
                command = " ".join(str(c) for c in command)
            if command:
                commands.append(str(command))
            if isinstance(data.get("processes"), dict):  # fly.toml: process group -> command
                commands.extend(str(c) for c in data["processes"].values())
            data = data["env"]
        raw = data
    values = {str(k): _scalar(str(k), v, path) for k, v in raw.items()}
    secrets.register_many(values.values())
    return values, commands


def format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}.get(suffix, "dotenv")


APP_SPEC_COMPONENTS = ("services", "workers", "jobs", "static_sites", "functions")


def _structured(text: str, fmt: str, path: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text)
        if fmt == "toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        # The parser's message can quote a line of the file, which may hold a value.
        raise errors.InvalidRequest(PLATFORM, "read", path, f"not valid {fmt}: {type(exc).__name__}") from None


def _app_spec(data: dict[str, Any]) -> dict[str, Any] | None:
    spec = data.get("spec") if isinstance(data.get("spec"), dict) else data
    return spec if any(isinstance(spec.get(k), list) for k in APP_SPEC_COMPONENTS) else None


def _task_definition(data: dict[str, Any]) -> dict[str, Any] | None:
    definition = data.get("taskDefinition") if isinstance(data.get("taskDefinition"), dict) else data
    return definition if isinstance(definition.get("containerDefinitions"), list) else None


def _ecs_env(definition: dict[str, Any], path: str) -> SourceEnv:
    family = definition.get("family", "?")
    env = SourceEnv(platform=PLATFORM, resource=f"file {path} (ECS task definition {family})")
    for container in definition["containerDefinitions"]:
        cname = container.get("name", "?")
        for item in container.get("environment") or []:
            value = _scalar(item.get("name", "?"), item.get("value"), path)
            secrets.register(value)
            env.values.setdefault(item["name"], EnvValue(item["name"], value, origin=f"{cname} environment"))
        for item in container.get("secrets") or []:
            env.values.setdefault(item["name"], EnvValue(item["name"], None, secret=True,
                                                         origin=f"{cname} secret (valueFrom, not read from a file)"))
        command = container.get("command") or container.get("entryPoint")
        if command:
            env.commands.append(" ".join(str(c) for c in command) if isinstance(command, list) else str(command))
        if container.get("environmentFiles"):
            env.notes.append(f"{cname}: environmentFiles (S3) are not read from a file export")
    return env


def read_env(target: Any) -> SourceEnv:
    """The variables of a `file` target."""
    path = target.path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.NotFound(PLATFORM, "read", path, "no such file") from None
    except PermissionError:
        raise errors.Unauthorized(PLATFORM, "read", path, "permission denied") from None
    fmt = format_of(path)
    if fmt != "dotenv":
        data = _structured(text, fmt, path)
        if isinstance(data, dict):
            spec = _app_spec(data)
            if spec is not None:
                from bot.platforms.digitalocean.apps import env_of_spec  # pure: reads the spec only

                env = env_of_spec(spec, resource=f"file {path} (App Platform spec {spec.get('name', '?')})")
                env.platform = PLATFORM
                secrets.register_many(v.value for v in env.values.values() if v.value is not None)
                return env
            definition = _task_definition(data)
            if definition is not None:
                return _ecs_env(definition, path)
    values, commands = parse(text, fmt, path=path)
    env = SourceEnv(platform=PLATFORM, resource=f"file {path}", commands=commands)
    env.values = {name: EnvValue(name, value, origin=f"file {Path(path).name}") for name, value in values.items()}
    return env


def parse_ecs_env_file(text: str) -> dict[str, str]:
    """ECS environment files: `NAME=VALUE` lines, `#` comments and blank lines ignored, no quoting."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value
    secrets.register_many(values.values())
    return values
