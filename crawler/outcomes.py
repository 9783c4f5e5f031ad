"""How a URL that produced no usable page ended: the exceptions the crawler's middlewares raise, and
the one terminal status each failure maps to."""

from __future__ import annotations

import socket

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import defer
from twisted.internet import error as twisted_error
from twisted.web._newclient import ResponseNeverReceived


class BlockedAddress(IgnoreRequest):
    """The URL's host resolves to (or the response came from) a non-public address."""


class BlockedScheme(IgnoreRequest):
    """A URL (or redirect hop) that is not http(s): file:, data:, ftp:, s3: are never fetched."""


class HostUnreachable(IgnoreRequest):
    """The host never answered: its robots.txt could not be fetched (RFC 9309: complete disallow), or
    its first connections all failed. Its remaining URLs end without a connection."""


class RobotsUnreachable(IgnoreRequest):
    """robots.txt answered 429 or 5xx: RFC 9309 2.3.1.4 says assume complete disallow."""


class ConnectTimeout(twisted_error.TimeoutError):
    """No TCP connection within the connect timeout (separate from the whole-response timeout)."""


TIMEOUTS = (DownloadTimeoutError, twisted_error.TimeoutError, defer.TimeoutError)
CONNECTION_ERRORS = (
    DownloadConnectionRefusedError,
    DownloadFailedError,
    ResponseDataLossError,
    twisted_error.ConnectError,
    twisted_error.ConnectionLost,
    ResponseNeverReceived,
    ConnectionError,
)
DNS_ERRORS = (CannotResolveHostError, twisted_error.DNSLookupError, socket.gaierror)
IGNORED = {  # IgnoreRequest subclasses, most specific first
    HostUnreachable: "host_unreachable",
    RobotsUnreachable: "robots_unreachable",
    BlockedAddress: "blocked_address",
    BlockedScheme: "blocked_scheme",
}


def failure_status(exc: BaseException) -> str:
    """The terminal status of a request that produced no usable response."""
    if isinstance(exc, HttpError):
        return "http_error"
    if isinstance(exc, IgnoreRequest):
        for kind, status in IGNORED.items():
            if isinstance(exc, kind):
                return status
        message = str(exc)
        if "robots.txt" in message:
            return "robots_denied"
        if "redirections" in message:
            return "redirect_loop"
        if "DOWNLOAD_MAXSIZE" in message:
            return "too_large"
        return "ignored"
    if isinstance(exc, TIMEOUTS):
        return "timeout"
    if isinstance(exc, DNS_ERRORS):
        return "dns_error"
    if isinstance(exc, (DownloadCancelledError, defer.CancelledError)):
        return "too_large"
    if isinstance(exc, CONNECTION_ERRORS):
        return "connection_error"
    return "error"


def is_connection_failure(exc: BaseException) -> bool:
    """No answer from the host at all: what host health counts (an HTTP error is an answer)."""
    return isinstance(exc, TIMEOUTS + CONNECTION_ERRORS) and not isinstance(exc, IgnoreRequest)
