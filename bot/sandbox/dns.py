"""A real authoritative DNS server on 127.0.0.1 (dnslib): the rehearsal world's zone, and the tests'.

    server = LocalDnsServer(); server.start()
    server.use_source(route53_source(r53, zone_id))     # answers follow moto's Route 53 record sets

    def test_verify(dns_server):
        dns_server.set("api.example.com", "A", ["192.0.2.1"], ttl=60)
        dns_server.set_later(0.5, "api.example.com", "A", ["192.0.2.2"])   # flips from another thread
        ... nameservers=[dns_server.address] ...

Answers carry the AA flag (as an authoritative server's do) unless `authoritative = False`. A test
may instead give a `source(name, rtype) -> [RecordSet]`, read on every query: the Route 53 bridge
below reads the record sets from moto each time, and picks one weighted set by weight, as
Route 53's servers do, so the DNS answers follow the API's state honestly.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


@dataclass
class RecordSet:
    values: list[str]
    ttl: int = 300
    weight: int | None = None  # None: a simple record


Source = Callable[[str, str], list[RecordSet]]


def _key(name: str, rtype: str) -> tuple[str, str]:
    return name.lower().rstrip(".") + ".", rtype.upper()


class ZoneResolver(BaseResolver):
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[RecordSet]] = {}
        self.source: Source | None = None
        self.authoritative = True
        self.queries = 0
        self.lock = threading.Lock()
        self.rng = random.Random(7)

    def lookup(self, name: str, rtype: str) -> list[RecordSet]:
        if self.source is not None:
            return self.source(*_key(name, rtype))
        with self.lock:
            return list(self.records.get(_key(name, rtype), []))

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:  # noqa: ANN001 (dnslib's signature)
        reply = request.reply(ra=0, aa=1 if self.authoritative else 0)
        qname = str(request.q.qname)
        rtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries += 1
        sets = self.lookup(qname, rtype)
        if not sets:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        chosen = self.pick(sets)
        for value in chosen.values:
            reply.add_answer(*RR.fromZone(f"{qname} {chosen.ttl} IN {rtype} {value}"))
        return reply

    def pick(self, sets: list[RecordSet]) -> RecordSet:
        """Route 53's weighted choice: weight 0 gets nothing unless every set has weight 0."""
        if len(sets) == 1 or sets[0].weight is None:
            return sets[0]
        weights = [s.weight or 0 for s in sets]
        if sum(weights) == 0:
            weights = [1] * len(sets)
        with self.lock:
            return self.rng.choices(sets, weights=weights)[0]


class LocalDnsServer:
    def __init__(self) -> None:
        self.resolver = ZoneResolver()
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        # UDP takes a free port; TCP (for truncated answers) must get the same number, which another
        # process may hold: then try again with a new port.
        for attempt in range(20):
            self.udp = DNSServer(self.resolver, address="127.0.0.1", port=0, logger=logger)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(self.resolver, address="127.0.0.1", port=self.port, tcp=True, logger=logger)
                break
            except OSError:
                self.udp.server.server_close()
                if attempt == 19:
                    raise
        self.address = f"127.0.0.1:{self.port}"
        self._timers: list[threading.Timer] = []

    def start(self) -> None:
        self.udp.start_thread()
        self.tcp.start_thread()

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.udp.stop()
        self.tcp.stop()
        self.udp.server.server_close()
        self.tcp.server.server_close()

    @property
    def authoritative(self) -> bool:
        return self.resolver.authoritative

    @authoritative.setter
    def authoritative(self, value: bool) -> None:
        self.resolver.authoritative = value

    @property
    def queries(self) -> int:
        return self.resolver.queries

    def set(self, name: str, rtype: str, values: list[str], ttl: int = 300) -> None:
        with self.resolver.lock:
            self.resolver.records[_key(name, rtype)] = [RecordSet(list(values), ttl)]

    def set_weighted(self, name: str, rtype: str, sets: list[RecordSet]) -> None:
        with self.resolver.lock:
            self.resolver.records[_key(name, rtype)] = list(sets)

    def set_later(self, delay: float, name: str, rtype: str, values: list[str], ttl: int = 300) -> None:
        """Change the answer from another thread after `delay` seconds (a propagation that takes time)."""
        timer = threading.Timer(delay, self.set, args=(name, rtype, values, ttl))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def use_source(self, source: Source | None) -> None:
        self.resolver.source = source


def route53_source(r53_client, zone_id: str) -> Source:
    """A `Source` that reads the record sets from Route 53 (moto) on every query."""

    def source(name: str, rtype: str) -> list[RecordSet]:
        page = r53_client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name,
                                                    StartRecordType=rtype)
        found = []
        for rs in page["ResourceRecordSets"]:
            if rs["Name"].lower() != name or rs["Type"] != rtype:
                break
            found.append(RecordSet([r["Value"] for r in rs.get("ResourceRecords", [])], int(rs.get("TTL", 300)),
                                   rs.get("Weight")))
        return found

    return source
