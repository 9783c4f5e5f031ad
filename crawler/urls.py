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
    if host[-1:].isdigit() or ":" in host:  # only these can be IP addresses (raising costs ~3 µs a host)
        try:
            ipaddress.ip_address(host.strip("[]"))
            return host
        except ValueError:
            pass
    parts = _extract(host)
    return parts.top_domain_under_public_suffix or host


# The common case of `UrlNormalizer.parts` over an Arrow array of raw URLs at once (RE2 kernels): a URL
# that is already what `fast_normalize` returns is its own result. Each other distinct URL takes the
# Python path once (the callers cache it).


def ascii_literal(text: str) -> str:
    """`text` as an RE2 pattern matching exactly it (hex escapes)."""
    return "".join(f"\\x{ord(c):02x}" for c in text)


def spread(values: pa.Array, positions: np.ndarray, length: int) -> pa.Array:
    """An array of `length` holding `values` at `positions` (in order) and null elsewhere."""
    index = np.full(length, -1, np.int64)
    index[positions] = np.arange(len(positions))
    return values.take(pa.array(index, mask=index < 0))


_PATH_CHARS = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]]"
_PARAM_CHARS = r"[A-Za-z0-9\-._~!$'()*+,;:@/?\[\]]"  # a query's characters but `&` and `=`
_PARAM = rf"(?:{_PARAM_CHARS}+(?:={_PARAM_CHARS}*)?|={_PARAM_CHARS}*)"  # not empty, at most one `=`
_CANONICAL = (  # lower-case scheme and host, no port, a path, parameters as above, no fragment
    rf"^https?://{_HOST.pattern}/{_PATH_CHARS}*(?:\?{_PARAM}(?:&{_PARAM})*)?$"
)


def _canonical(urls: pa.Array, tracking: list[str]) -> np.ndarray:
    exclude = r"--|&amp;|^https?://[^/?]*[^?]*(?://|/\.)" + (
        rf"|[?&](?:{'|'.join(tracking)})(?:=|&|$)" if tracking else ""
    )
    canonical = pc.and_(pc.less_equal(pc.utf8_length(urls), 261), pc.match_substring_regex(urls, _CANONICAL))
    canonical = pc.and_(canonical, pc.invert(pc.match_substring_regex(urls, exclude)))
    canonical = pc.fill_null(canonical, False).to_numpy(zero_copy_only=False)
    several = np.flatnonzero(
        canonical & pc.fill_null(pc.match_substring_regex(urls, r"\?.*&"), False).to_numpy(zero_copy_only=False)
    )
    if len(several):  # a repeated key: `fast_normalize` drops the repeats
        params = pc.split_pattern(
            pc.list_element(pc.split_pattern(urls.take(pa.array(several)), "?", max_splits=1), 1), "&"
        )
        keys = pc.list_element(pc.split_pattern(params.flatten(), "=", max_splits=1), 0)
        pairs = (
            pa.table({"row": pc.list_parent_indices(params), "key": keys})
            .group_by(["row", "key"], use_threads=False)
            .aggregate([("key", "count")])
        )
        canonical[several[pairs["row"].filter(pc.greater(pairs["key_count"], 1)).to_numpy()]] = False
    return canonical


def _without_tracking(urls: pa.Array, tracking: pa.Array) -> pa.Array:
    """URLs with their tracking parameters removed, where there is no fragment and every parameter is
    non-empty with at most one `=` (others stay as they are: `_canonical` refuses them)."""
    split = pc.split_pattern(urls, "?", max_splits=1)
    # a fragment (`#!` becomes a parameter in url-normalize) would hide in the last parameter: left as is
    rows = np.flatnonzero(
        pc.and_(pc.equal(pc.list_value_length(split), 2), pc.invert(pc.match_substring(urls, "#"))).to_numpy(
            zero_copy_only=False
        )
    )
    if not len(rows):
        return urls
    split = split.take(pa.array(rows))
    params = pc.split_pattern(pc.list_element(split, 1), "&")
    flat, parent = params.flatten(), pc.list_parent_indices(params).to_numpy()
    plain = pc.match_substring_regex(flat, rf"^{_PARAM_CHARS}*(?:={_PARAM_CHARS}*)?$")  # what `fast_normalize` accepts
    bad = pc.or_(pc.equal(flat, ""), pc.invert(plain)).to_numpy(zero_copy_only=False)
    keep = ~pc.is_in(pc.list_element(pc.split_pattern(flat, "=", max_splits=1), 0), tracking).to_numpy(
        zero_copy_only=False
    )
    offsets = np.zeros(len(rows) + 1, np.int32)
    np.cumsum(np.bincount(parent[keep], minlength=len(rows)), out=offsets[1:])
    query = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep))), "&")
    cleaned = pc.binary_join_element_wise(
        pc.list_element(split, 0), pc.if_else(pc.equal(query, ""), "", pc.binary_join_element_wise("?", query, "")), ""
    )
    clean = np.ones(len(rows), bool)
    clean[parent[bad]] = False
    return pc.coalesce(spread(cleaned.filter(pa.array(clean)), rows[clean], len(urls)), urls)


def canonical_urls(raw: pa.Array, tracking_params: frozenset[str]) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(which raw URLs `UrlNormalizer.parts` gets in vectorized form, their normalized URLs, their hosts).

    A URL is taken when it is canonical already (printable ASCII, lower-case http(s) scheme and valid
    host of ≤ 253 characters, no port, a path without `//` or `/.`, no `&amp;`, no `--` (IDNA rules),
    parameters that are not empty, have at most one `=`, no tracking key and no repeated key, no
    fragment), or becomes canonical by lower-casing its scheme and host, unescaping `&amp;` once (when
    every `&` is one) and removing tracking parameters: that is all `fast_normalize` would do to it."""
    tracking = [ascii_literal(t) for t in sorted(tracking_params) if t.isascii()]
    fast = _canonical(raw, tracking)
    urls = raw
    rest = np.flatnonzero(~fast & pc.is_valid(raw).to_numpy(zero_copy_only=False))
    if len(rest):
        other = raw.take(pa.array(rest))
        once = pc.invert(pc.match_substring(pc.replace_substring(other, "&amp;", ""), "&"))
        other = pc.if_else(once, pc.replace_substring(other, "&amp;", "&"), other)
        if tracking_params:
            other = _without_tracking(other, pa.array(sorted(tracking_params), pa.string()))
        parts = pc.split_pattern(other, "/", max_splits=3)
        whole = pc.equal(pc.list_value_length(parts), 4).to_numpy(zero_copy_only=False)
        rest, parts = rest[whole], parts.filter(pa.array(whole))
        if len(rest):
            scheme, host = pc.ascii_lower(pc.list_element(parts, 0)), pc.ascii_lower(pc.list_element(parts, 2))
            repaired = pc.binary_join_element_wise(
                scheme, pc.list_element(parts, 1), host, pc.list_element(parts, 3), "/"
            )
            good = _canonical(repaired, tracking)
            rest = rest[good]
            urls = pc.coalesce(
                pc.if_else(pa.array(fast), raw, pa.scalar(None, pa.string())),
                spread(repaired.filter(pa.array(good)), rest, len(raw)),
            )
            fast[rest] = True
    taken = urls.filter(pa.array(fast))
    hosts = pc.list_element(pc.split_pattern(taken, "/", max_splits=3), 2) if len(taken) else pa.array([], pa.string())
    return (
        fast,
        pc.if_else(pa.array(fast), urls, pa.scalar(None, pa.string())),
        spread(hosts, np.flatnonzero(fast), len(raw)),
    )
