"""Scrapy's HTTP/1.1 download handler with a connect timeout of its own.

Scrapy uses DOWNLOAD_TIMEOUT for the TCP connect too, so a host that drops packets holds a request
slot for the whole response timeout before anything is known. Here a connection gets
WEBTEXT_CONNECT_TIMEOUT_S; the response still gets DOWNLOAD_TIMEOUT in all.
"""

from __future__ import annotations

from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from crawler.outcomes import ConnectTimeout


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


class ConnectTimeoutHandler(HTTP11DownloadHandler):
    def __init__(self, crawler):
        super().__init__(crawler)
        from twisted.internet import reactor

        pool = _ConnectTimeoutPool(reactor, crawler.settings.getfloat("WEBTEXT_CONNECT_TIMEOUT_S"))
        pool.maxPersistentPerHost = self._pool.maxPersistentPerHost
        pool._factory = self._pool._factory  # Scrapy's lenient HTTP/1.1 client factory
        self._pool = pool
