"""Embedded worlds that stand up on loopback with no credentials.

- `bot.sandbox.world`: the rehearsal world of seed 000 (moto, the DigitalOcean stand-in, PostgreSQL,
  PgBouncer, a local authoritative DNS server); `bot.sandbox.rehearse` walks a runbook through it.
- `bot.sandbox.demo`: two local HTTP services for `runbooks/demo.yaml`.
"""

from bot.sandbox.demo import DEMO_HOST, Sandbox, run_demo

__all__ = ["DEMO_HOST", "Sandbox", "run_demo"]
