"""URL normalization, registered domains and host blocklists.

Normalization is url-normalize (case, default ports, dot segments, percent-encoding) plus w3lib's
query cleaner (tracking parameters, fragments); registered domains come from tldextract's bundled
public-suffix snapshot, so nothing is fetched at run time.
"""

from __future__ import annotations

import html
import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tldextract
from url_normalize import url_normalize
from w3lib.url import url_query_cleaner

# Private suffixes (github.io, blogspot.com) count: each user site there is its own site.
_extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


class InvalidURL(ValueError):
    """A submission URL that cannot be a crawlable web page."""


def _prepare(raw: str) -> str:
    url = raw.strip()
    while "&amp;" in url:  # Pushshift stores HTML-escaped URLs, sometimes twice
        url = html.unescape(url)
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidURL(f"not an http(s) URL: {raw[:200]!r}")
    return url


def _normalize_full(url: str, raw: str, tracking_params) -> str:
    try:
        url = url_normalize(url)
        url = url_query_cleaner(url, tracking_params, remove=True, keep_fragments=False)
    except (ValueError, UnicodeError) as exc:
        raise InvalidURL(f"cannot normalize {raw[:200]!r}: {exc}") from exc
    if not urlsplit(url).hostname:
        raise InvalidURL(f"no host in {raw[:200]!r}")
    return url


def normalize_url(raw: str, tracking_params: list[str]) -> str:
    """Canonical form of a submitted URL, so that the same page posted twice collapses to one row.

    The reference path: url-normalize (case, default ports, dot segments, percent-encoding, IDNA) and
    w3lib's query cleaner (tracking parameters, fragments). `UrlNormalizer` gives the same results faster.
    """
    return _normalize_full(_prepare(raw), raw, tracking_params)


# An http(s) URL that needs no percent-encoding, IDNA or dot-segment work: the common case.
_SIMPLE = re.compile(
    r"([A-Za-z]{4,5})://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?"
    r"(/[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]]*)?"
    r"(?:\?([A-Za-z0-9\-._~!$'()*+,;=:@/?\[\]&]*))?"
    r"(?:#(.*))?",
    re.ASCII | re.DOTALL,
)
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_DEFAULT_PORT = {"http": "80", "https": "443"}


def fast_normalize(url: str, tracking_params: frozenset[str]) -> tuple[str, str, str] | None:
    """`normalize_url` of a prepared URL in plain string operations, as (url, host, path), or None
    when the URL needs the full path (non-ASCII, escapes, odd hosts, dot segments, empty or repeated
    `=` parameters, `#!`)."""
    match = _SIMPLE.fullmatch(url)
    if match is None:
        return None
    scheme, host, port, path, query, fragment = match.groups()
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORT or fragment is not None and fragment.startswith("!"):
        return None
    host = host.lower()
    if len(host) > 253 or not _HOST.fullmatch(host):
        return None
    if "--" in host and any(label[2:4] == "--" for label in host.split(".")):
        return None  # IDNA rules for xn-- and other labels with hyphens at 3-4
    if port is not None:
        if port[0] == "0" or int(port) > 65535:
            return None
        if port == _DEFAULT_PORT[scheme]:
            port = None
    if path is None:
        path = "/"
    elif "//" in path or "/." in path:
        return None
    out = f"{scheme}://{host}:{port}{path}" if port else f"{scheme}://{host}{path}"
    if query:
        seen, kept = set(), []
        for param in query.split("&"):
            if not param or param.count("=") > 1:
                return None
            key = param.partition("=")[0]
            if key in seen:
                continue
            seen.add(key)
            if key not in tracking_params:
                kept.append(param)
        if kept:
            out += "?" + "&".join(kept)
    return out, host, path


class UrlNormalizer:
    """`normalize_url` with a fast path for simple ASCII URLs and a bounded cache of recent results
    (the same URL is submitted many times)."""

    def __init__(self, tracking_params: list[str], cache_size: int = 1 << 18):
        self.params = list(tracking_params)
        self.lookup = frozenset(tracking_params)
        self.cache: dict[str, tuple[str, str, str] | InvalidURL] = {}
        self.cache_size = cache_size
        self.fast = self.full = 0

    def parts(self, raw: str) -> tuple[str, str, str]:
        """(normalized URL, its host, its path), uncached; InvalidURL when it cannot be a web page."""
        url = _prepare(raw)
        result = fast_normalize(url, self.lookup)
        if result is not None:
            self.fast += 1
            return result
        self.full += 1
        url = _normalize_full(url, raw, self.params)
        parts = urlsplit(url)
        return url, parts.hostname or "", parts.path

    def split(self, raw: str) -> tuple[str, str, str]:
        """`parts` through the cache."""
        result = self.cache.get(raw)
        if result is None:
            try:
                result = self.parts(raw)
            except InvalidURL as exc:
                result = exc
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[raw] = result
        if isinstance(result, InvalidURL):
            raise result
        return result

    def __call__(self, raw: str) -> str:
        return self.split(raw)[0]


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


# `fast_normalize` over an Arrow array of raw URLs at once (RE2 regexes and string kernels). Only plain
# printable-ASCII URLs go this way; anything the vectorized rules cannot decide is left to Python.
_PRINTABLE = r"^[!-~]+$"  # no whitespace, nothing non-ASCII: `strip` has nothing to do
_HTTP = r"^[hH][tT][tT][pP][sS]?://"
_SIMPLE_RE2 = (
    r"^(?P<scheme>[hH][tT][tT][pP][sS]?)://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]]*)?"
    r"(?:\?(?P<query>[A-Za-z0-9\-._~!$'()*+,;=:@/?\[\]&]*))?"
    r"(?:#(?P<fragment>[!-~]*))?$"
)
FAST, INVALID, SLOW = 0, 1, 2  # `normalize_batch` outcomes


def _clean_query(query: pa.Array, tracking: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Queries without tracking parameters and repeated keys (the first kept), and which rows need the
    full path (an empty parameter or two `=` in one)."""
    lists = pc.split_pattern(query, "&")
    params = lists.flatten()
    parent = pc.list_parent_indices(lists).to_numpy()
    bad = pc.or_(pc.equal(params, ""), pc.match_substring_regex(params, "=.*=")).to_numpy(zero_copy_only=False)
    slow = np.zeros(len(query), bool)
    slow[parent[bad]] = True
    keys = pc.replace_substring_regex(params, "=.*", "")
    first = pa.table({"parent": parent, "key": keys, "pos": np.arange(len(params))}).group_by(["parent", "key"], use_threads=False).aggregate([("pos", "min")])
    keep = np.zeros(len(params), bool)
    keep[first["pos_min"].to_numpy()] = True
    keep &= ~pc.is_in(keys, tracking).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(query) + 1, np.int32)
    np.cumsum(np.bincount(parent[keep], minlength=len(query)), out=offsets[1:])
    kept = pa.ListArray.from_arrays(pa.array(offsets), params.filter(pa.array(keep)))
    return pc.binary_join(kept, "&"), slow


def normalize_batch(raw: pa.Array, tracking_params: frozenset[str]) -> tuple[np.ndarray, pa.Array, pa.Array, pa.Array]:
    """(outcome, url, host, path) of each raw URL: FAST rows carry what `UrlNormalizer.parts` gives,
    INVALID rows are what it refuses (no http(s) scheme), SLOW rows need `UrlNormalizer.parts`."""
    n = len(raw)
    outcome = np.full(n, SLOW, np.int8)
    printable = pc.fill_null(pc.match_substring_regex(raw, _PRINTABLE), False)
    escaped = pc.match_substring(raw, "&amp;")
    # HTML-escaped once, and no other `&...` that html.unescape would touch: a plain replacement
    once = pc.and_(escaped, pc.invert(pc.match_substring(pc.replace_substring(raw, "&amp;", ""), "&")))
    prepared = pc.if_else(once, pc.replace_substring(raw, "&amp;", "&"), raw)
    usable = pc.and_(printable, pc.or_(pc.invert(escaped), pc.and_(once, pc.invert(pc.match_substring(prepared, "&amp;")))))
    usable = pc.fill_null(usable, False).to_numpy(zero_copy_only=False)
    http = pc.fill_null(pc.match_substring_regex(prepared, _HTTP), False).to_numpy(zero_copy_only=False)
    outcome[usable & ~http] = INVALID
    outcome[pc.is_null(raw).to_numpy(zero_copy_only=False)] = INVALID
    rows = np.flatnonzero(usable & http)
    parts = pc.extract_regex(prepared.take(pa.array(rows, pa.int64())), _SIMPLE_RE2)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    rows, parts = rows[matched], parts.filter(pa.array(matched))
    scheme, host, port, path, query, fragment = (pc.struct_field(parts, name) for name in ("scheme", "host", "port", "path", "query", "fragment"))
    scheme, host = pc.ascii_lower(scheme), pc.ascii_lower(host)
    path = pc.if_else(pc.equal(path, ""), "/", path)
    slow = pc.or_(pc.starts_with(fragment, "!"), pc.greater(pc.utf8_length(host), 253))
    slow = pc.or_(slow, pc.invert(pc.match_substring_regex(host, "^" + _HOST.pattern + "$")))
    slow = pc.or_(slow, pc.match_substring_regex(host, r"(^|\.)[^.][^.]--"))
    slow = pc.or_(slow, pc.or_(pc.starts_with(port, "0"), pc.and_(pc.equal(pc.utf8_length(port), 5), pc.greater(port, "65535"))))
    slow = pc.or_(slow, pc.or_(pc.match_substring(path, "//"), pc.match_substring(path, "/.")))
    default = pc.if_else(pc.equal(scheme, "http"), "80", "443")
    port = pc.if_else(pc.or_(pc.equal(port, ""), pc.equal(port, default)), "", pc.binary_join_element_wise(":", port, ""))
    query, slow_query = _clean_query(query, pa.array(sorted(tracking_params), pa.string()))
    query = pc.if_else(pc.equal(query, ""), "", pc.binary_join_element_wise("?", query, ""))
    url = pc.binary_join_element_wise(scheme, "://", host, port, path, query, "")
    fast = ~(slow.to_numpy(zero_copy_only=False) | slow_query)
    rows = rows[fast]
    outcome[rows] = FAST
    index = np.full(n, -1, np.int64)
    index[rows] = np.arange(len(rows))
    take = pa.array(index, mask=index < 0)
    keep = pa.array(fast)
    return outcome, url.filter(keep).take(take), host.filter(keep).take(take), path.filter(keep).take(take)
