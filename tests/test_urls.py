import pytest

from crawler.harvest import SubmissionFilter
from crawler.urls import InvalidURL, UrlNormalizer, normalize_url, registered_domain
from tests.conftest import SHARED
from tests.corpora import canonical_looking_urls, tricky_urls
from webtext.core.config import TRACKING_PARAMS, HarvestConfig
from webtext.core.ids import url_id


@pytest.fixture
def shared_data_or_none():
    """../shared/data when present: the real dumps add their URLs to the comparison."""
    path = SHARED / "data"
    return path if path.is_dir() else None


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


@pytest.mark.parametrize(
    "raw", ["ftp://example.com/file", "/r/programming/comments/abc", "javascript:alert(1)", "http://"]
)
def test_normalize_url_rejects_non_pages(raw):
    with pytest.raises(InvalidURL):
        normalize_url(raw, TRACKING_PARAMS)


def test_registered_domain_uses_public_suffixes_offline():
    assert registered_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert registered_domain("a.b.example.com") == "example.com"
    assert registered_domain("user.github.io") == "user.github.io"  # a private public suffix
    assert registered_domain("127.0.0.1") == "127.0.0.1"


def test_host_lists_match_domain_and_subdomains_only():
    keep = SubmissionFilter(
        HarvestConfig(reddit_domains=["redd.it"], wikipedia_domains=["wikipedia.org"], media_domains=["redd.it"])
    )
    assert keep.host_class("en.wikipedia.org")[0] == "wikipedia"
    assert keep.host_class("wikipedia.org")[0] == "wikipedia"
    assert keep.host_class("i.redd.it")[0] == "reddit_link"  # in two lists: the first reason wins
    assert keep.host_class("notwikipedia.org") == (None, "notwikipedia.org")
    assert keep.host_class("wikipedia.org.evil.com") == (None, "evil.com")


def test_url_id_is_stable_and_distinct():
    a = url_id("http://example.com/a")
    assert a == url_id("http://example.com/a") and len(a) == 32
    assert a != url_id("http://example.com/b")


def outcome(fn, raw):
    try:
        return fn(raw)
    except InvalidURL:
        return InvalidURL


def test_fast_path_is_identical_to_url_normalize(shared_data_or_none):
    urls = tricky_urls()
    if shared_data_or_none is not None:  # and every URL of the real dumps
        from crawler.harvest import Slice, read_submissions
        from webtext.core.config import HarvestConfig
        from webtext.core.stats import StageStats

        for name in ["RS_2005-06.zst", "RS_v2_2005-06.xz"]:
            piece = Slice(str(shared_data_or_none / "reddit" / name))
            urls += [
                r.url
                for batch in read_submissions(piece, HarvestConfig(), StageStats("h", "s"))
                for r in batch
                if r.url
            ]
    fast = UrlNormalizer(TRACKING_PARAMS)
    mismatches = [u for u in urls if outcome(fast, u) != outcome(lambda x: normalize_url(x, TRACKING_PARAMS), u)]
    assert not mismatches, mismatches[:5]
    assert fast.fast > 500 and fast.full > 5000  # both paths were exercised


def test_normalizer_cache_returns_the_same_and_reraises():
    n = UrlNormalizer(TRACKING_PARAMS, cache_size=2)
    for _ in range(3):
        assert n("HTTP://Example.com:80/a?utm_source=x") == "http://example.com/a"
        with pytest.raises(InvalidURL):
            n("ftp://example.com/")


def test_canonical_urls_are_their_own_normalization():
    import pyarrow as pa

    from crawler.urls import canonical_urls

    urls = tricky_urls() + canonical_looking_urls()
    fast, normalized, hosts = canonical_urls(pa.array(urls + [None], pa.string()), frozenset(TRACKING_PARAMS))
    reference = UrlNormalizer(TRACKING_PARAMS)
    assert not fast[-1]
    for raw, is_fast, url, host in zip(urls, fast.tolist(), normalized.to_pylist(), hosts.to_pylist()):
        if is_fast:
            assert reference.parts(raw)[:2] == (url, host), raw
    assert 50 < fast.sum() < len(urls) / 2  # both kinds were exercised


def test_tracking_parameters_are_removed_only_where_the_fast_path_would():
    import pyarrow as pa

    from crawler.urls import canonical_urls

    urls = [
        f"http://Example.com/x?{q}"
        for q in [
            "utm_source=a b&id=1",
            "utm_source=é&id=1",
            "utm_source=a%20b&id=1",
            "utm_source=a=b&id=1",
            "id=1&utm_source=x ",
            "id=1&&utm_source=x",
            "utm_source=x&id=1#!p",
            "utm_source=x&amp;id=1",
            "id=1&utm_source=x&id=2",
            "utm_source=x",
            "fbclid=1&utm_source=2&q=3",
        ]
    ]
    fast, normalized, _ = canonical_urls(pa.array(urls, pa.string()), frozenset(TRACKING_PARAMS))
    reference = UrlNormalizer(TRACKING_PARAMS)
    for raw, is_fast, url in zip(urls, fast.tolist(), normalized.to_pylist()):
        if is_fast:
            assert reference.parts(raw)[0] == url, raw
    assert fast.tolist()[-4:] == [True, False, True, True]
