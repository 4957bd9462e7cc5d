"""`EnvSource` of a `file` target: wraps `bot.platforms.envfile` (its formats and parsing live there)."""

from __future__ import annotations

from typing import Any

from bot.platforms import envfile
from bot.platforms.envvalue import SourceEnv


class FileEnv:
    def __init__(self, target: Any) -> None:
        self.target = target

    def read(self) -> SourceEnv:
        return envfile.read_env(self.target)
