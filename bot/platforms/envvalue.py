"""What every environment source resolves to: name -> `EnvValue`, plus the commands that read them.

    from bot.platforms.envvalue import EnvValue, SourceEnv
    v = EnvValue("WORKERS", "4", origin="task definition environment (api)")
    v.known, v.fingerprint()          # True, '3f1c...'   (keyed HMAC, never the value)

`value` is None when the platform does not reveal it (an App Platform SECRET comes back as
`EV[1:...]`, a Fly secret as a digest): such a variable can only be compared by presence, and the
matrix says so. The value is excluded from `repr` so that a stray log line or a traceback's locals
never show it; adapters register every value with `bot.secrets` the moment they read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot import secrets


@dataclass(frozen=True)
class EnvValue:
    name: str
    value: str | None = field(default=None, repr=False)
    secret: bool = False  # came from a secret store (or the platform marks it SECRET)
    origin: str = ""  # where it was read: "environment", "secretsmanager", "app spec (service api)", ...
    scope: str | None = None  # App Platform scope (RUN_TIME, RUN_AND_BUILD_TIME); None elsewhere

    @property
    def known(self) -> bool:
        """True when the value itself was read (so it can be compared by fingerprint)."""
        return self.value is not None

    def fingerprint(self) -> str:
        return secrets.fingerprint(self.value) if self.value is not None else ""


@dataclass
class SourceEnv:
    """The environment one target's process really gets, as far as the platform shows it."""

    platform: str
    resource: str  # "service prod/api (task definition api:7)", "app api-production"
    values: dict[str, EnvValue] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)  # container command / entryPoint / run_command
    notes: list[str] = field(default_factory=list)  # things the matrix should say (build-time only vars, ...)

    def names(self) -> set[str]:
        return set(self.values)
