"""A simulated unhealthy web on loopback, for the crawl's tests (small) and benchmarks (large).

Hundreds of hosts, each on its own 127.x.y.z address and one shared port, of configurable kinds:
healthy (log-normal latency), slow (4-8 s), mostly 5xx, 429 with Retry-After, redirects to another
host, flaky (its first connections reset), robots.txt answering 404, 5xx or never, connections
refused (nothing listens), accepted and never answered, and names that do not resolve. URLs per
host follow a power law. Names resolve through a DNS server of its own on 127.0.0.1 (and a second
one that never answers, for resolver deadlines); `Web.lower_bound` is the shortest time any crawl
with given settings can take, given up on dead hosts after one round.

The servers run in a child process (`SimulatedWeb`), listen on loopback only, and stop with the
context manager or when their parent process dies.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import socket
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass

HEALTHY_KINDS = ("healthy", "slow", "errors", "rate_limited", "redirect", "flaky", "robots_4xx")
FAILING_KINDS = ("refused", "blackhole", "robots_hang", "robots_5xx", "nxdomain")
# The share of hosts of each kind: a web where old links often point at dead hosts.
DEFAULT_MIX = {
    "healthy": 0.55,
    "slow": 0.03,
    "errors": 0.05,
    "rate_limited": 0.04,
    "redirect": 0.03,
    "flaky": 0.02,
    "robots_4xx": 0.05,
    "refused": 0.08,
    "blackhole": 0.06,
    "robots_hang": 0.03,
    "robots_5xx": 0.03,
    "nxdomain": 0.03,
}
# The status every URL of a host of each kind must end with ("errors" hosts: see Web.status).
STATUS = {
    "healthy": "ok",
    "slow": "ok",
    "rate_limited": "ok",
    "redirect": "ok",
    "flaky": "ok",
    "robots_4xx": "ok",
    "refused": "host_unreachable",
    "blackhole": "host_unreachable",
    "robots_hang": "host_unreachable",
    "robots_5xx": "robots_unreachable",
    "nxdomain": "dns_error",
}
FLAKY_RESETS = 1  # connections a flaky host resets before it serves
ERROR_SHARE = 0.8  # pages of an "errors" host that answer 500
RETRY_AFTER_S = 1
ROBOTS = b"User-agent: *\nDisallow: /private/\n"


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    kind: str
    urls: int
    latency_ms: float = 150.0  # median of a healthy host's log-normal latency

    def latency(self, path: str) -> float:
        """Seconds this host takes to answer `path`: deterministic, so a lower bound can be computed."""
        rng = random.Random(zlib.crc32(f"{self.name}{path}".encode()))
        if self.kind == "slow" and path != "/robots.txt":  # slow pages; its static robots.txt is not
            return rng.uniform(4.0, 8.0)
        return rng.lognormvariate(math.log(self.latency_ms / 1000), 0.5)

    def fails(self, path: str) -> bool:
        """An "errors" host's page that answers 500."""
        return self.kind == "errors" and zlib.crc32(f"{self.name}{path}".encode()) % 1000 < ERROR_SHARE * 1000


@dataclass
class Web:
    hosts: list[Host]
    port: int = 0
    dns_port: int = 0
    silent_dns_port: int = 0
    names: bool = True  # URLs by name (resolved by the DNS server), else by address
    redirect_to: str = ""  # the healthy host redirects point at

    def host_url(self, host: Host) -> str:
        return f"http://{host.name if self.names else host.address}:{self.port}"

    def urls(self) -> list[str]:
        return [f"{self.host_url(h)}/p/{i}" for h in self.hosts for i in range(h.urls)]

    def status(self, host: Host, path: str) -> str:
        """The status a correct crawl gives this URL."""
        if host.kind == "errors":
            return "http_error" if host.fails(path) else "ok"
        if host.kind == "nxdomain" and not self.names:
            return "host_unreachable"  # no name to fail: its address refuses connections
        return STATUS[host.kind]

    def expected(self) -> Counter:
        """URLs per status a correct crawl ends with."""
        return Counter(self.status(h, f"/p/{i}") for h in self.hosts for i in range(h.urls))

    def failing_share(self) -> float:
        failing = sum(h.urls for h in self.hosts if h.kind in FAILING_KINDS)
        return failing / max(1, sum(h.urls for h in self.hosts))

    def lower_bound(
        self, per_domain: int, robots_timeout_s: float, timeout_s: float, retries: int, robots: bool = True
    ) -> float:
        """Seconds the slowest host needs at best: its work spread over `per_domain` connections, a
        dead host given up after one round (its robots.txt deadline, or one response timeout)."""
        return max(
            (self.host_seconds(h, per_domain, robots_timeout_s, timeout_s, retries, robots) for h in self.hosts),
            default=0.0,
        )

    def host_seconds(
        self, host: Host, per_domain: int, robots_timeout_s: float, timeout_s: float, retries: int, robots: bool
    ) -> float:
        if host.kind in ("refused", "nxdomain"):
            return 0.0
        if host.kind == "blackhole":
            return robots_timeout_s if robots else timeout_s
        if host.kind == "robots_hang" and robots:
            return robots_timeout_s
        first = host.latency("/robots.txt") if robots else 0.0
        if host.kind == "robots_5xx" and robots:
            return first * (1 + min(1, retries))
        times = []
        for i in range(host.urls):
            path = f"/p/{i}"
            t = host.latency(path)
            if host.fails(path):
                t *= 1 + retries
            elif host.kind == "rate_limited":
                t = 2 * t + RETRY_AFTER_S
            elif host.kind == "redirect":
                t += 0.15  # the target's median answer
            times.append(t)
        return first + max(sum(times) / per_domain, max(times, default=0.0))


def make_web(
    hosts: int,
    urls: int,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    zipf: float = 1.0,
    names: bool = True,
    kinds: list[str] | None = None,
) -> Web:
    """`hosts` hosts of kinds drawn from `mix` (or `kinds` in turn), `urls` URLs spread over them by a
    power law (rank^-zipf)."""
    rng = random.Random(seed)
    mix = mix or DEFAULT_MIX
    if kinds:
        kinds = [kinds[i % len(kinds)] for i in range(hosts)]
    else:
        kinds = rng.choices(list(mix), weights=list(mix.values()), k=hosts)
    weights = [1 / (rank + 1) ** zipf for rank in range(hosts)]
    rng.shuffle(weights)
    total = sum(weights)
    counts = [max(1, int(urls * w / total)) for w in weights]
    for i in rng.choices(range(hosts), weights=weights, k=max(0, urls - sum(counts))):
        counts[i] += 1
    octet = rng.randrange(100, 250)  # a /16 of its own, so that simulators running at once do not collide
    out = [
        Host(f"h{i:04d}.sim.test", f"127.{octet}.{i // 250}.{i % 250 + 1}", kind, n, rng.uniform(50, 300))
        for i, (kind, n) in enumerate(zip(kinds, counts))
    ]
    web = Web(out, names=names)
    web.redirect_to = next((h.name for h in out if h.kind == "healthy"), "")
    return web


# -- the servers (child process) ------------------------------------------------------------------


class _Servers:
    def __init__(self, web: Web):
        self.web = web
        self.by_name = {h.name: h for h in web.hosts}
        self.connections: Counter = Counter()
        self.requests: Counter = Counter()
        self.served: Counter = Counter()  # 200s of pages, per host
        self.queries: Counter = Counter()  # DNS queries, per name
        self.seen: set[tuple[str, str]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: Host) -> None:
        self.connections[host.name] += 1
        try:
            if host.kind == "flaky" and self.connections[host.name] <= FLAKY_RESETS:
                writer.transport.abort()
                return
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode("latin-1")
                self.requests[host.name] += 1
                answer = self.answer(host, path)
                if answer is None:  # never answers: hold the connection until the client gives up
                    await reader.read()
                    return
                delay, status, headers, body = answer
                await asyncio.sleep(delay)
                lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers, "", ""]
                writer.write("\r\n".join(lines).encode() + body)
                await writer.drain()
                if status == 200 and path.startswith("/p/"):
                    self.served[host.name] += 1
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, host: Host, path: str):
        """(delay, status, headers, body), or None for no answer at all."""
        delay = host.latency(path)
        if host.kind == "blackhole" or (path == "/robots.txt" and host.kind == "robots_hang"):
            return None
        if path == "/robots.txt":
            if host.kind == "robots_5xx":
                return delay, 503, [], b"unavailable"
            if host.kind == "robots_4xx":
                return delay, 404, [], b"not found"
            return delay, 200, ["Content-Type: text/plain"], ROBOTS
        if host.fails(path) or host.kind == "robots_5xx":
            return delay, 500, [], b"error"
        if host.kind == "rate_limited" and (host.name, path) not in self.seen:
            self.seen.add((host.name, path))
            return delay, 429, [f"Retry-After: {RETRY_AFTER_S}"], b"slow down"
        if host.kind == "redirect":
            target = f"http://{self.web.redirect_to}:{self.web.port}/p/from-{host.name}{path.replace('/', '-')}"
            if not self.web.names:
                target = f"http://{self.by_name[self.web.redirect_to].address}:{self.web.port}/p/from-{host.name}{path.replace('/', '-')}"
            return delay, 301, [f"Location: {target}"], b""
        return delay, 200, ["Content-Type: text/html; charset=utf-8"], page(host, path)

    def stats(self) -> dict:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "served": self.served,
            "queries": self.queries,
        }


def page(host: Host, path: str) -> bytes:
    words = " ".join(f"w{zlib.crc32(f'{host.name}{path}{i}'.encode()) % 5000}" for i in range(300))
    return f"<html><head><title>{host.name}{path}</title></head><body><article><p>{words}</p></article></body></html>".encode()


class _DNS(asyncio.DatagramProtocol):
    """A, and empty AAAA, answers for the simulated names; NXDOMAIN for nxdomain hosts and the unknown."""

    def __init__(self, servers: _Servers):
        self.servers = servers

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        from twisted.names import dns

        query = dns.Message()
        query.fromStr(data)
        reply = dns.Message(id=query.id, answer=1, recDes=query.recDes, recAv=1, auth=1)
        reply.queries = query.queries
        question = query.queries[0]
        name = question.name.name.decode().rstrip(".").lower()
        self.servers.queries[name] += 1
        host = self.servers.by_name.get(name)
        if host is None or host.kind == "nxdomain":
            reply.rCode = dns.ENAME
        elif question.type == dns.A:
            reply.answers = [dns.RRHeader(name, dns.A, dns.IN, 60, dns.Record_A(host.address, 60))]
        self.transport.sendto(reply.toStr(), addr)


async def _serve(web: Web, ready, control_port: int) -> None:
    servers = _Servers(web)
    loop = asyncio.get_running_loop()
    for host in web.hosts:
        if host.kind in ("refused", "nxdomain"):
            continue  # nothing listens at its address: connections are refused
        await asyncio.start_server(lambda r, w, h=host: servers.handle(r, w, h), host.address, web.port, backlog=512)
    await loop.create_datagram_endpoint(lambda: _DNS(servers), local_addr=("127.0.0.1", web.dns_port))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a resolver that never answers
    silent.bind(("127.0.0.1", web.silent_dns_port))

    async def control(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = json.dumps(servers.stats()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    await asyncio.start_server(control, "127.0.0.1", control_port)
    ready.set()
    parent = os.getppid()
    while os.getppid() == parent:  # stops by itself when the process that started it is gone
        await asyncio.sleep(0.5)


def _run(web: Web, ready, control_port: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(web, ready, control_port))


def _free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimulatedWeb:
    """Context manager: serves `web` from a child process, filling in its ports; `stats()` counts
    connections, requests, pages served and DNS queries per host."""

    def __init__(self, web: Web):
        self.web = web

    def __enter__(self) -> SimulatedWeb:
        self.web.port = _free_port()
        self.web.dns_port = _free_port(socket.SOCK_DGRAM)
        self.web.silent_dns_port = _free_port(socket.SOCK_DGRAM)
        self.control_port = _free_port()
        ready = mp.get_context("spawn").Event()
        self.process = mp.get_context("spawn").Process(
            target=_run, args=(self.web, ready, self.control_port), daemon=True
        )
        self.process.start()
        if not ready.wait(60):
            self.process.kill()
            raise RuntimeError("the simulated web did not start")
        return self

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/stats", timeout=10) as response:
            return json.loads(response.read())

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.join()


def describe(web: Web) -> dict:
    """Counts of hosts and URLs per kind."""
    kinds: dict = {}
    for h in web.hosts:
        entry = kinds.setdefault(h.kind, {"hosts": 0, "urls": 0})
        entry["hosts"] += 1
        entry["urls"] += h.urls
    return {
        "hosts": len(web.hosts),
        "urls": sum(h.urls for h in web.hosts),
        "kinds": kinds,
        "failing_share": round(web.failing_share(), 3),
        "largest_host": max(h.urls for h in web.hosts),
    }
