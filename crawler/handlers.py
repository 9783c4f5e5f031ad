"""Scrapy's HTTP/1.1 download handler with host health and a connect timeout of its own.

Host health lives here, where a request is about to connect, because downloader middlewares see a
request when it is queued for its host, before it waits for a connection slot: every queued URL of a
dead host has passed them by the time its first connections fail. A server that has not answered yet
gets one connection at a time (the first is usually its robots.txt), so its failures are known before
more of its URLs are tried.

Scrapy uses DOWNLOAD_TIMEOUT for the TCP connect too, so a host that drops packets holds a request
slot for the whole response timeout before anything is known. Here a connection gets
WEBTEXT_CONNECT_TIMEOUT_S; the response still gets DOWNLOAD_TIMEOUT in all.
"""

from __future__ import annotations

import asyncio

from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from crawler.outcomes import ConnectTimeout, HostUnreachable, is_connection_failure


class HostHealth:
    """Gives up a server (host and port) that has never answered once `threshold` connections to it
    in a row failed (refused, reset, timed out): its other URLs end as host_unreachable, unfetched.
    A server that has answered once (any HTTP status) is alive: its later failures stay per URL, so
    a slow or flaky server is never given up."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.failures: dict[str, int] = {}
        self.answered: set[str] = set()
        self.condemned: dict[str, str] = {}

    def check(self, server: str) -> None:
        why = self.condemned.get(server)
        if why is not None:
            raise HostUnreachable(f"{server} not contacted: {why}")

    def failed(self, server: str, exc: BaseException) -> None:
        if server in self.answered or not is_connection_failure(exc):
            return
        self.failures[server] = n = self.failures.get(server, 0) + 1
        if n >= self.threshold and server not in self.condemned:
            self.condemned[server] = f"{n} connections failed and none answered (last: {type(exc).__name__}: {exc})"[
                :300
            ]


@implementer(IStreamClientEndpoint)
class _Deadline:
    """An endpoint whose connect() fails with ConnectTimeout after `timeout` seconds."""

    def __init__(self, endpoint, timeout: float, reactor):
        self.endpoint, self.timeout, self.reactor = endpoint, timeout, reactor

    def connect(self, factory):
        def late(result, timeout):
            raise ConnectTimeout(f"no TCP connection within {timeout:g} s")

        return self.endpoint.connect(factory).addTimeout(self.timeout, self.reactor, onTimeoutCancel=late)


class _ConnectTimeoutPool(HTTPConnectionPool):
    def __init__(self, reactor, timeout: float):
        super().__init__(reactor, persistent=True)
        self.timeout = timeout

    def getConnection(self, key, endpoint):
        return super().getConnection(key, _Deadline(endpoint, self.timeout, self._reactor))


class HealthyHostsHandler(HTTP11DownloadHandler):
    """`DOWNLOAD_HANDLERS` for http and https."""

    def __init__(self, crawler):
        super().__init__(crawler)
        from twisted.internet import reactor

        pool = _ConnectTimeoutPool(reactor, crawler.settings.getfloat("WEBTEXT_CONNECT_TIMEOUT_S"))
        pool.maxPersistentPerHost = self._pool.maxPersistentPerHost
        pool._factory = self._pool._factory  # Scrapy's lenient HTTP/1.1 client factory
        self._pool = pool
        self.health = HostHealth(crawler.settings.getint("WEBTEXT_HOST_FAILURES"))
        self.probes: dict[str, asyncio.Lock] = {}

    async def download_request(self, request):
        server = urlparse_cached(request).netloc
        if server not in self.health.answered:
            async with self.probes.setdefault(server, asyncio.Lock()):  # one probe at a time
                if server not in self.health.answered:
                    return await self._download(request, server)
        return await self._download(request, server)

    async def _download(self, request, server: str):
        self.health.check(server)
        try:
            response = await super().download_request(request)
        except Exception as exc:
            self.health.failed(server, exc)
            request.meta["webtext_host_answered"] = server in self.health.answered  # for the retries
            raise
        self.health.answered.add(server)
        return response
