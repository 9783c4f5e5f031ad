"""Downloader middleware that keeps a crawler of user-submitted links out of private networks."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from scrapy import Request, Spider
from scrapy.downloadermiddlewares import robotstxt
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred


class BlockedAddress(IgnoreRequest):
    """The URL's host resolves to (or the response came from) a non-public address."""


def is_public(address: str) -> bool:
    """Global unicast only: no loopback, private, link-local (169.254.169.254), multicast or reserved."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class AddressGuardMiddleware:
    """Resolves each request's host and refuses non-public addresses.

    Runs for every request, so every redirect hop is checked again, and checks the address a
    response actually came from (against DNS answers that change between lookup and connect).
    WEBTEXT_ALLOWED_NETWORKS (CIDRs) lets tests and the offline demo reach 127.0.0.0/8.
    """

    def __init__(self, allowed_networks: list[str]):
        self.allowed = [ipaddress.ip_network(n) for n in allowed_networks]

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.getlist("WEBTEXT_ALLOWED_NETWORKS"))

    def permitted(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        return is_public(address) or any(ip in network for network in self.allowed)

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        host = urlparse_cached(request).hostname or ""
        try:
            ipaddress.ip_address(host.strip("[]"))
            addresses = [host.strip("[]")]
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            addresses = [info[4][0] for info in infos]
        blocked = [a for a in addresses if not self.permitted(a)]
        if blocked:
            raise BlockedAddress(f"{host} resolves to non-public address {blocked[0]}")

    def process_response(self, request: Request, response: Response, spider: Spider | None = None):
        if response.ip_address is not None and not self.permitted(str(response.ip_address)):
            raise BlockedAddress(f"response from non-public address {response.ip_address}")
        return response


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
