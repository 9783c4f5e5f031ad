"""URL normalization, registered domains and host blocklists.

Normalization is url-normalize (case, default ports, dot segments, percent-encoding) plus w3lib's
query cleaner (tracking parameters, fragments); registered domains come from tldextract's bundled
public-suffix snapshot, so nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

import tldextract
from url_normalize import url_normalize
from w3lib.url import url_query_cleaner

# Private suffixes (github.io, blogspot.com) count: each user site there is its own site.
_extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


class InvalidURL(ValueError):
    """A submission URL that cannot be a crawlable web page."""


def normalize_url(raw: str, tracking_params: list[str]) -> str:
    """Canonical form of a submitted URL, so that the same page posted twice collapses to one row."""
    url = raw.strip()
    while "&amp;" in url:  # Pushshift stores HTML-escaped URLs, sometimes twice
        url = html.unescape(url)
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidURL(f"not an http(s) URL: {raw[:200]!r}")
    try:
        url = url_normalize(url)
        url = url_query_cleaner(url, tracking_params, remove=True, keep_fragments=False)
    except (ValueError, UnicodeError) as exc:
        raise InvalidURL(f"cannot normalize {raw[:200]!r}: {exc}") from exc
    if not urlsplit(url).hostname:
        raise InvalidURL(f"no host in {raw[:200]!r}")
    return url


def url_id(normalized_url: str) -> str:
    """Stable document id: the first 16 bytes of sha256 of the normalized URL, in hex."""
    return hashlib.sha256(normalized_url.encode()).hexdigest()[:32]


@lru_cache(maxsize=1 << 16)
def registered_domain(host: str) -> str:
    """eTLD+1 of a host (bbc.co.uk for news.bbc.co.uk); IP addresses and bare names stand for themselves."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    parts = _extract(host)
    return parts.top_domain_under_public_suffix or host


def host_in(host: str, domains: frozenset[str]) -> bool:
    """True when `host` is one of `domains` or a subdomain of one."""
    labels = host.split(".")
    return any(".".join(labels[i:]) in domains for i in range(len(labels)))
