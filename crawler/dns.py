"""Host lookups for a crawl: one asynchronous lookup per host and worker process, shared by the
address guard and the download, cached both ways (an unresolvable host fails its other URLs at once), with a deadline.

Scrapy's default resolver looks names up again for the connection, in a 10-thread pool, with no
negative cache: a host that does not resolve costs a lookup per URL and retry, and a resolver that
does not answer holds those threads. Here the guard resolves and checks a host once; the resolver
Scrapy connects through (`LookupResolver`, installed on the reactor) answers from the same cache, so the
address that was checked is the address that is dialled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IResolverSimple
from zope.interface import implementer

# getaddrinfo blocks a thread per lookup; a resolver that does not answer must not starve the others.
SYSTEM_LOOKUP_THREADS = 32


class HostLookups:
    """host -> its addresses, looked up once (through `servers` or the system resolver) and cached,
    failures included. `servers` are "ip" or "ip:port" strings (a cluster's own resolvers)."""

    def __init__(self, servers: list[str], timeout_s: float):
        self.timeout_s = timeout_s
        self.servers = [parse_server(s) for s in servers]
        self.results: dict[str, asyncio.Future] = {}
        self._resolver = None
        self._threads: ThreadPoolExecutor | None = None

    async def addresses(self, host: str) -> list[str]:
        """The host's addresses; raises DNSLookupError (cached) when it has none in time."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]  # a literal address needs no lookup
        except ValueError:
            pass
        future = self.results.get(host)
        if future is None:
            future = self.results[host] = asyncio.ensure_future(self._lookup(host))
        return await asyncio.shield(future)

    async def _lookup(self, host: str) -> list[str]:
        try:
            addresses = await asyncio.wait_for(self._query(host), self.timeout_s)
        except (asyncio.TimeoutError, defer.TimeoutError):
            raise DNSLookupError(f"{host}: no answer within {self.timeout_s:g} s") from None
        except (OSError, DNSLookupError) as exc:
            raise DNSLookupError(f"{host}: {exc}") from None
        if not addresses:
            raise DNSLookupError(f"{host}: no address")
        return addresses

    async def _query(self, host: str) -> list[str]:
        if self.servers:
            return await self._query_servers(host)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(SYSTEM_LOOKUP_THREADS, thread_name_prefix="dns")
        loop = asyncio.get_running_loop()
        infos = await loop.run_in_executor(self._threads, socket.getaddrinfo, host, None, 0, socket.SOCK_STREAM)
        return list(dict.fromkeys(info[4][0] for info in infos))

    async def _query_servers(self, host: str) -> list[str]:
        from twisted.names import client, dns, error

        if self._resolver is None:
            self._resolver = client.Resolver(servers=self.servers)
        # one query per server in turn, the whole lookup bounded by timeout_s (wait_for above)
        try:
            answers, _, _ = await self._resolver.lookupAddress(host, timeout=(self.timeout_s,)).asFuture(
                asyncio.get_running_loop()
            )
        except error.DomainError:
            raise DNSLookupError(f"{host}: no such domain (NXDOMAIN)") from None
        except error.DNSServerError as exc:
            raise DNSLookupError(f"{host}: server failure ({type(exc).__name__})") from None
        return [r.payload.dottedQuad() for r in answers if r.type == dns.A]

    async def first_ipv4(self, host: str) -> str:
        for address in await self.addresses(host):
            if isinstance(ipaddress.ip_address(address.split("%")[0]), ipaddress.IPv4Address):
                return address
        raise DNSLookupError(f"{host}: no IPv4 address")


def parse_server(text: str) -> tuple[str, int]:
    """ "ip" or "ip:port" (an IPv6 address without a port) as the (host, port) twisted.names takes."""
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


_LOOKUPS: dict[tuple, HostLookups] = {}


def lookups_of(crawler) -> HostLookups:
    """The process's one HostLookups for these settings (of a Crawler or CrawlerRunner), shared by the
    address guard and the reactor's resolver."""
    s = crawler.settings
    key = (tuple(s.getlist("WEBTEXT_DNS_SERVERS")), s.getfloat("DNS_TIMEOUT"))
    if key not in _LOOKUPS:
        _LOOKUPS[key] = HostLookups(list(key[0]), key[1])
    return _LOOKUPS[key]


@implementer(IResolverSimple)
class LookupResolver:
    """The reactor's resolver: connections resolve through the crawl's HostLookups."""

    def __init__(self, reactor, lookups: HostLookups):
        self.reactor, self.lookups = reactor, lookups

    def install_on_reactor(self) -> None:
        self.reactor.installResolver(self)

    def getHostByName(self, name: str, timeout=()) -> defer.Deferred:
        return defer.Deferred.fromFuture(asyncio.ensure_future(self.lookups.first_ipv4(name)))
