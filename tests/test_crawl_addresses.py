"""Address safety, one check per route that tests/test_crawl.py does not already take: literal IPv4
in decimal, hex, octal and short forms, IPv6 forms carrying loopback or the metadata address,
0.0.0.0 / 0, and `file:` / `data:` URLs refused by scheme, listed directly or reached by a redirect.

The literal forms are refused from the address itself (getaddrinfo parses numeric hosts without a DNS
query); the redirect hops are refused before any connection to the target is attempted.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest
from scrapy import Request

from crawler.crawl import CRAWL
from crawler.middlewares import AddressGuardMiddleware, BlockedAddress
from crawler.urls import InvalidURL, normalize_url
from webtext.core.config import TRACKING_PARAMS, CrawlConfig
from webtext.core.runner import run_stage

LITERALS = [
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/",  # ... hex
    "http://017700000001/",  # ... octal
    "http://0177.0.0.1/",  # octal first octet
    "http://0x7f.1/",  # hex, short form
    "http://127.1/",  # short form
    "http://0/",  # 0.0.0.0
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::7f00:1]/",  # IPv4-compatible IPv6 of 127.0.0.1
    "http://[::127.0.0.1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:a9fe:a9fe]/",  # mapped 169.254.169.254 (cloud metadata)
    "http://[::a9fe:a9fe]/",  # IPv4-compatible 169.254.169.254
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of the metadata address
    "http://[fe80::1%25eth0]/",  # link-local with a zone
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/",
    "http://169.254.169.254/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://192.168.0.1/",
    "http://localhost/",  # a name resolving to loopback
]


@pytest.mark.parametrize("url", LITERALS)
def test_non_public_literal_address_is_refused_by_the_guard(url):
    with pytest.raises(BlockedAddress):
        asyncio.run(AddressGuardMiddleware([]).process_request(Request(url)))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "data:text/html,<p>secret</p>",
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "FILE:///etc/passwd",
    ],
)
def test_non_http_schemes_are_refused_at_harvest(url):
    with pytest.raises(InvalidURL):
        normalize_url(url, TRACKING_PARAMS)


class Redirector:
    """127.0.0.1 server: /to?<location> answers 302 to that location; counts every request."""

    def __init__(self):
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.hits.append(self.path)
                if self.path == "/robots.txt":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(302)
                self.send_header("Location", unquote(self.path.split("?", 1)[1]) if "?" in self.path else "/")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, location: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/to?{location}"


def crawl(tmp_path, urls: list[str], allowed: list[str]) -> tuple[object, list[dict]]:
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    config = CrawlConfig(allowed_networks=allowed, timeout_s=3.0, retries=0, autothrottle=False)
    stats = run_stage(CRAWL, [str(tmp_path / "urls.txt")], str(tmp_path / "pages"), config)
    return stats, pq.read_table(tmp_path / "pages").to_pylist()


def test_redirects_and_direct_urls_to_refused_schemes_and_addresses_never_fetch(tmp_path, local_ray):
    """Loopback is allowed (the redirector lives there); every hop it points to is not."""
    redirector = Redirector()
    try:
        targets = [
            "file:///etc/passwd",
            "data:text/html,<p>secret</p>",
            "http://0xa9fea9fe/latest/meta-data/",
            "http://2852039166/latest/",
            "http://[::a9fe:a9fe]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://0/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
        ]
        urls = [redirector.url(t) for t in targets] + ["file:///etc/passwd", "data:text/html,<p>secret</p>"]
        stats, pages = crawl(tmp_path, urls, ["127.0.0.0/8"])
    finally:
        redirector.server.shutdown()
    assert stats.input == len(urls) == len(pages)
    for page in pages:
        assert page["status"] != "ok" and not page["html"], page
    assert not any(b"root:" in (p["html"] or b"") for p in pages)
    # each redirect was requested once (Scrapy percent-encodes the query), and nothing else on loopback
    assert len([h for h in redirector.hits if h.startswith("/to?")]) == len(targets), redirector.hits
    print({p["url"][-40:]: p["status"] for p in pages})


def test_crawl_input_with_non_http_schemes_is_refused_by_scheme(tmp_path, local_ray):
    """`webtext crawl` takes a user's URL list as it is: a scheme other than http(s) must never be
    fetched, whatever its host resolves to (Scrapy has file, data, ftp and s3 handlers)."""
    urls = [
        "file://8.8.8.8/etc/passwd",
        "file://localhost/etc/passwd",
        "data://8.8.8.8/,hello",
        "s3://8.8.8.8/bucket/key",
        "ftp://8.8.8.8/x",
    ]
    stats, pages = crawl(tmp_path, urls, [])
    assert stats.input == len(pages) == len(urls)
    for page in pages:
        assert page["status"] != "ok" and not page["html"], page
        assert "scheme" in (page["error"] or ""), page  # refused by scheme, not by accident of DNS or FTP
