"""Environment variables from a file: dotenv, JSON or YAML (exports, and the sandbox).

    from bot.platforms import envfile
    env = envfile.read_env(FileTarget(path="exports/heroku.env"))   # SourceEnv
    env.values["WORKERS"].fingerprint()

The format follows the extension: `.json` (an object of name -> scalar), `.yaml`/`.yml` (a mapping
of the same shape, or `{env: {...}}`), anything else dotenv (python-dotenv's parser: quotes,
`export`, comments). A JSON/YAML file may also carry `command: "..."` next to `env:`, so the
sandbox can stand for a platform that exposes its start command. Every value is registered with
`bot.secrets` as it is read; nested values are refused with the offending name, not dumped.

`parse_ecs_env_file` reads the stricter format of ECS `environmentFiles` (`NAME=VALUE` per line,
`#` comments, no quoting), which ECS passes to the container verbatim.
"""

from __future__ import annotations

import io
import json
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
        try:
            data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            # The parser's message can quote a line of the file, which may hold a value.
            raise errors.InvalidRequest(PLATFORM, "read", path, f"not valid {fmt}: {type(exc).__name__}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise errors.InvalidRequest(PLATFORM, "read", path, f"expected a {fmt} mapping of names to values")
        if isinstance(data.get("env"), dict):
            command = data.get("command")
            if isinstance(command, list):
                command = " ".join(str(c) for c in command)
            if command:
                commands.append(str(command))
            data = data["env"]
        raw = data
    values = {str(k): _scalar(str(k), v, path) for k, v in raw.items()}
    secrets.register_many(values.values())
    return values, commands


def format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(suffix, "dotenv")


def read_env(target: Any) -> SourceEnv:
    """The variables of a `file` target."""
    path = target.path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.NotFound(PLATFORM, "read", path, "no such file") from None
    except PermissionError:
        raise errors.Unauthorized(PLATFORM, "read", path, "permission denied") from None
    values, commands = parse(text, format_of(path), path=path)
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
