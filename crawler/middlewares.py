"""Downloader middleware that keeps a crawler of user-submitted links out of private networks."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
from datetime import datetime, timezone

from scrapy import Request, Spider
from scrapy.downloadermiddlewares import robotstxt
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred


class BlockedAddress(IgnoreRequest):
    """The URL's host resolves to (or the response came from) a non-public address."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: mapped (::ffff:a.b.c.d), IPv4-compatible
    (::a.b.c.d, e.g. ::7f00:1 = 127.0.0.1), 6to4 (2002::/16) or NAT64 (64:ff9b::/96)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if int(ip) >> 32 == 0 or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(address: str) -> bool:
    """Global unicast only: no loopback, private, link-local (169.254.169.254), multicast or reserved,
    including IPv4 addresses carried inside IPv6 ones; Teredo tunnels are refused outright."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or int(ip) >> 32 == 0:
            return False  # Teredo, and IPv4-compatible addresses (deprecated by RFC 4291), never
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


class BlockedScheme(IgnoreRequest):
    """A URL (or redirect hop) that is not http(s): file:, data:, ftp:, s3: are never fetched."""


class AddressGuardMiddleware:
    """Resolves each request's host and refuses non-public addresses.

    Runs for every request, so every redirect hop is checked again, and checks the address a
    response actually came from (against DNS answers that change between lookup and connect).
    WEBTEXT_ALLOWED_NETWORKS (CIDRs) lets tests and the offline demo reach 127.0.0.0/8.
    """

    def __init__(self, allowed_networks: list[str]):
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self.resolved: dict[str, list[str]] = {}  # per unit: one lookup per host, not per request

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.getlist("WEBTEXT_ALLOWED_NETWORKS"))

    def permitted(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and embedded_ipv4(ip) is not None and not any(ip in n for n in self.allowed):
            ip = embedded_ipv4(ip)  # ::ffff:127.0.0.1 is as allowed as 127.0.0.1, no more
        return is_public(address) or any(ip in network for network in self.allowed)

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        parts = urlparse_cached(request)
        if parts.scheme not in ("http", "https"):
            raise BlockedScheme(f"scheme {parts.scheme!r} is never fetched (http and https only)")
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host.strip("[]"))
            addresses = [host.strip("[]")]
        except ValueError:
            addresses = self.resolved.get(host)
            if addresses is None:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
                addresses = self.resolved[host] = [info[4][0] for info in infos]
        blocked = [a for a in addresses if not self.permitted(a)]
        if blocked:
            raise BlockedAddress(f"{host} resolves to non-public address {blocked[0]}")

    def process_response(self, request: Request, response: Response, spider: Spider | None = None):
        if response.ip_address is not None and not self.permitted(str(response.ip_address)):
            raise BlockedAddress(f"response from non-public address {response.ip_address}")
        return response


def retry_after_seconds(value: bytes | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class RetryAfterMiddleware(RetryMiddleware):
    """Scrapy's retries, honouring Retry-After on 429 and 503: waits that long (holding the request's
    domain slot, which is the polite thing) up to WEBTEXT_RETRY_AFTER_MAX_S; a longer wait is not
    retried and the URL ends as http_error, its Retry-After in the error."""

    def __init__(self, settings):
        super().__init__(settings)
        self.cap = settings.getfloat("WEBTEXT_RETRY_AFTER_MAX_S", 60.0)

    async def process_response(self, request: Request, response: Response, spider: Spider | None = None):
        if response.status in (429, 503) and response.status in self.retry_http_codes and not request.meta.get("dont_retry"):
            delay = retry_after_seconds(response.headers.get(b"Retry-After"))
            if delay is not None:
                request.meta["webtext_retry_after"] = delay
                if delay > self.cap:
                    return response
                if request.meta.get("retry_times", 0) < self.max_retry_times:
                    await asyncio.sleep(delay)
        return super().process_response(request, response)


class RobotsTxtMiddleware(robotstxt.RobotsTxtMiddleware):
    """Scrapy's robots.txt middleware, fixed for the third and later requests that wait on one fetch.

    Scrapy 2.19 hands every waiter the same Deferred; the first waiter's callback returns None, so
    later waiters see no parser and are let through unchecked. Once the fetch has ended the parser is
    stored by netloc, so read it from there.
    """

    async def robot_parser(self, request: Request):
        parser = await super().robot_parser(request)
        stored = self._parsers.get(urlparse_cached(request).netloc, parser)
        return parser if isinstance(stored, Deferred) else stored
