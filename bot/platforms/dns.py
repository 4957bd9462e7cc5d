"""Ask a zone's authoritative nameservers directly what they answer, until they answer what we expect.

    from bot.platforms import dns as dnscheck
    servers = dnscheck.authoritative_servers("example.com.")                 # from the NS set
    servers = dnscheck.authoritative_servers("example.com.", override=["127.0.0.1:5353"])
    result = dnscheck.wait_until(servers, "api.example.com.", "A",
                                 accepted=[{"203.0.113.20"}], timeout=120, samples=5,
                                 now=ctx.clock.now, sleep=ctx.sleep)
    result.ok, result.seconds, result.table()          # each server's last answer and time to converge

Why the authoritative servers and not a resolver: a recursive resolver answers from its cache, so it
tells us what one cache holds, not whether the change has reached the source every cache refills
from. Each server is asked directly over UDP (TCP when the answer is truncated) and an answer only
counts when it carries the AA flag: a non-authoritative answer means we asked the wrong server.

Weighted records (Route 53) answer one record set per query, picked by weight, so a single query
can look converged by luck. `samples` queries per server must all land in `accepted` (a list of
acceptable answer sets, one per record set that still has weight) before that server counts.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from bot.platforms import errors

PLATFORM = "dns"


@dataclass(frozen=True)
class Server:
    """One authoritative server: `label` is what people read (the NS name, or ip:port)."""

    label: str
    ip: str
    port: int = 53


@dataclass
class Answer:
    server: str
    values: list[str]
    ttl: int | None
    authoritative: bool
    rcode: str
    error: str | None = None


@dataclass
class ServerReport:
    server: str
    converged: bool = False
    seconds: float | None = None  # from the start of the wait to the first fully accepted round
    queries: int = 0
    last_values: list[str] = field(default_factory=list)
    last_ttl: int | None = None
    last_error: str | None = None


@dataclass
class Convergence:
    ok: bool
    seconds: float  # until the last server converged (or until the timeout)
    servers: list[ServerReport]

    def table(self) -> list[list[str]]:
        rows = [["server", "answer", "ttl", "converged after"]]
        for s in self.servers:
            answer = ", ".join(s.last_values) if s.last_values else (s.last_error or "(empty)")
            if s.last_error and s.last_values:
                answer += f" [{s.last_error}]"
            rows.append([s.server, answer, "" if s.last_ttl is None else str(s.last_ttl),
                         f"{s.seconds:.1f}s" if s.converged and s.seconds is not None else "not yet"])
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 3), "servers": [asdict(s) for s in self.servers]}


def parse_server(spec: str) -> Server:
    """`127.0.0.1:5353`, `192.0.2.1` or `[::1]:5353` -> Server."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest.lstrip(":") or 53)
    elif spec.count(":") == 1:
        host, _, port_text = spec.partition(":")
        port = int(port_text)
    else:
        host, port = spec, 53
    if not 0 < port < 65536:
        raise ValueError(f"nameserver {spec!r}: port out of range")
    return Server(label=spec, ip=host, port=port)


def authoritative_servers(zone: str, *, override: Iterable[str] | None = None,
                          ns_names: Iterable[str] | None = None, timeout: float = 5.0) -> list[Server]:
    """The servers to ask: an explicit `ip:port` list (tests, private zones), else the NS set.

    `ns_names` is the provider's own list (Route 53's delegation set); without it the zone's NS
    records are looked up. Each NS host is resolved to its addresses with the system resolver.
    """
    override = list(override or [])
    if override:
        return [parse_server(s) for s in override]
    names = [n.rstrip(".") for n in (ns_names or [])]
    if not names:
        try:
            answer = dns.resolver.resolve(zone, "NS", lifetime=timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise errors.Unavailable(PLATFORM, "resolve NS", zone, f"cannot find the zone's nameservers: {exc}") from exc
        names = sorted(r.target.to_text().rstrip(".") for r in answer)
    servers: list[Server] = []
    for name in names:
        try:
            infos = socket.getaddrinfo(name, 53, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise errors.Unavailable(PLATFORM, "resolve nameserver", name, str(exc)) from exc
        for ip in sorted({info[4][0] for info in infos}):
            servers.append(Server(label=f"{name} ({ip})", ip=ip, port=53))
    if not servers:
        raise errors.NotFound(PLATFORM, "resolve NS", zone, "the zone has no nameservers")
    return servers


def normalize(rdtype: str, value: str) -> str:
    """Canonical text of one record value, so that `Foo.example.net` and `foo.example.net.` compare equal."""
    value = value.strip()
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value,
                                    origin=dns.name.root)
    except (dns.exception.DNSException, ValueError):
        return value.lower()
    text = rdata.to_text()
    # Names are case-insensitive; TXT data is not, so only lower-case name-bearing types.
    return text if rdtype.upper() in ("TXT", "SPF", "CAA") else text.lower()


def invalid_value(rdtype: str, value: str) -> str | None:
    """Why `value` is not valid data for `rdtype` (None when it is)."""
    try:
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value.strip(), origin=dns.name.root)
    except (dns.exception.DNSException, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def answer_set(rdtype: str, values: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize(rdtype, v) for v in values)


def query(server: Server, name: str, rdtype: str, *, timeout: float = 2.0) -> Answer:
    """One question to one server, UDP first and TCP when the UDP answer is truncated."""
    request = dns.message.make_query(name, rdtype)
    request.flags &= ~dns.flags.RD  # an authoritative server must answer without recursing
    try:
        response, _tcp = dns.query.udp_with_fallback(request, server.ip, timeout=timeout, port=server.port)
    except (dns.exception.DNSException, OSError) as exc:
        return Answer(server.label, [], None, False, "", f"no answer: {type(exc).__name__}: {exc}")
    authoritative = bool(response.flags & dns.flags.AA)
    rcode = dns.rcode.to_text(response.rcode())
    wanted = dns.rdatatype.from_text(rdtype)
    values: list[str] = []
    ttl: int | None = None
    for rrset in response.answer:
        if rrset.rdtype == wanted:
            values.extend(r.to_text() for r in rrset)
            ttl = rrset.ttl
    values = sorted(normalize(rdtype, v) for v in values)
    error = None
    if rcode != "NOERROR":
        error = rcode
    elif not authoritative:
        error = "answer without the AA flag: not authoritative for this zone"
    return Answer(server.label, values, ttl, authoritative, rcode, error)


def wait_until(servers: list[Server], name: str, rdtype: str, accepted: list[Iterable[str]], *,
               timeout: float, now: Callable[[], float], sleep: Callable[[float], None],
               samples: int = 1, interval: float = 1.0, query_timeout: float = 2.0,
               progress: Callable[[int, int, str], None] | None = None,
               expect_ttl: int | None = None,
               query_fn: Callable[..., Answer] = query) -> Convergence:
    """Ask every server until all `samples` answers of one round are among the `accepted` sets.

    Returns a `Convergence` (never raises on a timeout: the caller reports each server's last
    answer). `sleep` should be the step's cancellable sleep so an abort stops the wait.
    `expect_ttl` also requires the answer's TTL (an authoritative server gives the configured one).
    """
    if not servers:
        raise ValueError("no nameservers to ask")
    accepted_sets = {answer_set(rdtype, a) for a in accepted}
    reports = {s.label: ServerReport(server=s.label) for s in servers}
    started = now()
    workers = min(32, len(servers) * max(1, samples))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dns-verify") as pool:
        while True:
            # One round: every server not yet converged gets `samples` questions, all at once,
            # so a round costs one round trip, not servers x samples of them.
            pending = [s for s in servers if not reports[s.label].converged]
            futures = {s.label: [pool.submit(query_fn, s, name, rdtype, timeout=query_timeout)
                                 for _ in range(max(1, samples))] for s in pending}
            for label, asked in futures.items():
                report = reports[label]
                answers = [future.result() for future in asked]
                report.queries += len(answers)
                bad = [a for a in answers if a.error or frozenset(a.values) not in accepted_sets
                       or (expect_ttl is not None and a.ttl != expect_ttl)]
                # Show the answer that kept the server from converging, if one did.
                shown = (bad or answers)[-1]
                report.last_values, report.last_ttl, report.last_error = shown.values, shown.ttl, shown.error
                if not bad:
                    report.converged = True
                    report.seconds = now() - started
            done = sum(r.converged for r in reports.values())
            elapsed = now() - started
            if progress is not None:
                progress(done, len(servers), f"{done}/{len(servers)} authoritative servers answer the expected data")
            if done == len(servers):
                return Convergence(True, max(r.seconds or 0.0 for r in reports.values()), list(reports.values()))
            if elapsed >= timeout:
                return Convergence(False, elapsed, list(reports.values()))
            sleep(min(interval, max(0.0, timeout - elapsed)))


def fmt_ttl(seconds: float | None) -> str:
    """300 -> "5m", 86400 -> "24h", 45 -> "45s", None -> "n/a"."""
    if seconds is None:
        return "n/a"
    seconds = int(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
