"""Which authoritative servers a DNS step asks: the step's `nameservers`, the target's, the setting.

A private or rehearsal zone's NS records do not resolve publicly, so the servers can be named; when
they are, no provider call is made to find them (the target below points at a closed port: any
call to Route 53 would fail the test).
"""

from __future__ import annotations

from bot.runbook.targets import AwsRoute53Target
from bot.steps.dns_records import Route53Zone, servers_for

UNREACHABLE = "http://127.0.0.1:9"


def _zone(**fields) -> Route53Zone:
    return Route53Zone(AwsRoute53Target(zone="example.com.", endpoint_url=UNREACHABLE, **fields))


def test_the_step_wins_then_the_target_then_the_setting(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_NAMESERVERS", "127.0.0.3:5353")
    zone = _zone(nameservers=["127.0.0.2:5300"])
    assert [(s.ip, s.port) for s in servers_for(zone, ["127.0.0.1:5301"])] == [("127.0.0.1", 5301)]
    assert [(s.ip, s.port) for s in servers_for(zone, [])] == [("127.0.0.2", 5300)]
    assert [(s.ip, s.port) for s in servers_for(_zone(), [])] == [("127.0.0.3", 5353)]


def test_without_any_the_zone_is_asked_for_its_nameservers(monkeypatch):
    import pytest

    from bot.platforms import errors

    monkeypatch.delenv("RUNBOOK_BOT_NAMESERVERS", raising=False)
    with pytest.raises(errors.PlatformError):
        servers_for(_zone(), [])  # the Route 53 lookup is attempted (and fails on the closed port)
