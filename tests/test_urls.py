from crawler.urls import InvalidURL, host_in, normalize_url, registered_domain, url_id
from webtext.config import TRACKING_PARAMS

import pytest


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("HTTP://Example.COM:80/a/./b/../c", "http://example.com/a/c"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com/page?id=3&amp;utm_source=reddit", "http://example.com/page?id=3"),
        ("http://example.com/page?id=3&amp;amp;x=1", "http://example.com/page?id=3&x=1"),
        ("http://example.com/story#comments", "http://example.com/story"),
        ("http://example.com/a?fbclid=XYZ&q=term", "http://example.com/a?q=term"),
        ("  http://example.com  ", "http://example.com/"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
    ],
)
def test_normalize_url(raw, expected):
    assert normalize_url(raw, TRACKING_PARAMS) == expected


@pytest.mark.parametrize("raw", ["ftp://example.com/file", "/r/programming/comments/abc", "javascript:alert(1)", "http://"])
def test_normalize_url_rejects_non_pages(raw):
    with pytest.raises(InvalidURL):
        normalize_url(raw, TRACKING_PARAMS)


def test_registered_domain_uses_public_suffixes_offline():
    assert registered_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert registered_domain("a.b.example.com") == "example.com"
    assert registered_domain("user.github.io") == "user.github.io"  # a private public suffix
    assert registered_domain("127.0.0.1") == "127.0.0.1"


def test_host_in_matches_domain_and_subdomains_only():
    domains = frozenset(["wikipedia.org", "redd.it"])
    assert host_in("en.wikipedia.org", domains)
    assert host_in("wikipedia.org", domains)
    assert host_in("i.redd.it", domains)
    assert not host_in("notwikipedia.org", domains)
    assert not host_in("wikipedia.org.evil.com", domains)


def test_url_id_is_stable_and_distinct():
    a = url_id("http://example.com/a")
    assert a == url_id("http://example.com/a") and len(a) == 32
    assert a != url_id("http://example.com/b")
