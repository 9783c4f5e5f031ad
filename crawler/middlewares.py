"""Downloader middlewares: the address guard that keeps a crawler of user-submitted links out of
private networks, robots.txt with a deadline and RFC 9309's rules, and retries that
honour Retry-After and are not spent on hosts that never answered."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
from datetime import datetime, timezone

from scrapy import Request, Spider
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet.error import DNSLookupError

from crawler.dns import HostLookups, lookups_of
from crawler.outcomes import TIMEOUTS, BlockedAddress, BlockedScheme, HostUnreachable, RobotsUnreachable

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


class AddressGuardMiddleware:
    """Resolves each request's host and refuses non-public addresses.

    Runs for every request, so every redirect hop is checked again, and checks the address a
    response actually came from (against DNS answers that change between lookup and connect).
    WEBTEXT_ALLOWED_NETWORKS (CIDRs) lets tests and the offline demo reach 127.0.0.0/8.
    """

    def __init__(self, allowed_networks: list[str], lookups: HostLookups | None = None):
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self.lookups = lookups or HostLookups([], 10.0)  # shared with the download (crawler.dns)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.getlist("WEBTEXT_ALLOWED_NETWORKS"), lookups_of(crawler))

    def permitted(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        if (
            isinstance(ip, ipaddress.IPv6Address)
            and embedded_ipv4(ip) is not None
            and not any(ip in n for n in self.allowed)
        ):
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
            addresses = await self.lookups.addresses(host)
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
        if (
            response.status in (429, 503)
            and response.status in self.retry_http_codes
            and not request.meta.get("dont_retry")
        ):
            delay = retry_after_seconds(response.headers.get(b"Retry-After"))
            if delay is not None:
                request.meta["webtext_retry_after"] = delay
                if delay > self.cap:
                    return response
                if request.meta.get("retry_times", 0) < self.max_retry_times:
                    await asyncio.sleep(delay)
        return super().process_response(request, response)

    def process_exception(self, request: Request, exception: Exception, spider: Spider | None = None):
        if isinstance(exception, TIMEOUTS) and request.meta.get("webtext_host_answered") is False:
            return None  # a host that never answered (crawler.handlers): another timeout would only repeat that
        return super().process_exception(request, exception)


class RobotsTxtMiddleware:
    """robots.txt, fetched once per host with its own deadline (WEBTEXT_ROBOTS_TIMEOUT_S), read by the
    rules of RFC 9309: 2xx is parsed; 4xx means no rules (allow); 429 and 5xx mean complete disallow
    (`robots_unreachable`); no answer at all means the host is unreachable (`host_unreachable`).

    Scrapy's own middleware allows everything when robots.txt fails and parses a 5xx body as rules.
    """

    PRIORITY = 1000

    def __init__(self, crawler):
        settings = crawler.settings
        if not settings.getbool("ROBOTSTXT_OBEY"):
            raise NotConfigured
        self.crawler = crawler
        self.timeout = settings.getfloat("WEBTEXT_ROBOTS_TIMEOUT_S")
        self.retries = min(1, settings.getint("RETRY_TIMES"))
        self.useragent = settings["USER_AGENT"]
        self.parser = load_object(settings["ROBOTSTXT_PARSER"])
        self.rules: dict[str, asyncio.Future] = {}

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if request.meta.get("dont_obey_robotstxt"):
            return
        parts = urlparse_cached(request)
        future = self.rules.get(parts.netloc)
        if future is None:
            future = self.rules[parts.netloc] = asyncio.ensure_future(
                self._fetch(f"{parts.scheme}://{parts.netloc}/robots.txt")
            )
        rules = await asyncio.shield(future)
        if isinstance(rules, Exception):
            raise type(rules)(str(rules))
        if rules is not None and not rules.allowed(request.url, self.useragent):
            raise IgnoreRequest("Forbidden by robots.txt")

    async def _fetch(self, url: str):
        """The host's rules: a parser, None (no rules), or the exception every URL of the host ends with."""
        request = Request(
            url,
            priority=self.PRIORITY,
            callback=NO_CALLBACK,
            meta={"dont_obey_robotstxt": True, "download_timeout": self.timeout, "max_retry_times": self.retries},
        )
        try:
            response = await self.crawler.engine.download_async(request)
        except IgnoreRequest as exc:
            if "redirections" in str(exc):
                return None  # RFC 9309 2.3.1.2: past the redirect limit, robots.txt is unavailable
            return exc  # a blocked address or scheme, a host already condemned
        except DNSLookupError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is "unreachable"
            return HostUnreachable(
                f"robots.txt {url} unreachable ({type(exc).__name__}: {exc}): complete disallow"[:300]
            )
        if 200 <= response.status < 300:
            return build_from_crawler(self.parser, self.crawler, response.body)
        if response.status == 429 or response.status >= 500:
            return RobotsUnreachable(f"robots.txt {url} answered HTTP {response.status}: complete disallow (RFC 9309)")
        return None  # 4xx (and anything else that is not an error): no rules
