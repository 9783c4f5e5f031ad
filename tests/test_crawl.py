"""The crawl stage against a hostile 127.0.0.1 server: every URL ends with exactly one terminal status."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cleaning.extract import EXTRACT
from crawler.crawl import CRAWL
from crawler.middlewares import is_public
from crawler.urls import registered_domain
from tests.hostile_server import STATUS_OF_PATH, HostileServer
from webtext.core.config import CrawlConfig, ExtractConfig
from webtext.core.runner import run_stage
from webtext.core.schemas import URLS


def write_urls(path, urls):
    rows = [
        {"url": u, "domain": registered_domain(u.split("/")[2].split(":")[0].strip("[]")), "karma": 3} for u in urls
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=URLS), path)
    return path


def crawl_config(**overrides):
    settings = dict(allowed_networks=["127.0.0.0/8"], timeout_s=1.0, retries=1, max_bytes=2 * 2**20, autothrottle=False)
    settings.update(overrides)
    return CrawlConfig(**settings)


def test_every_url_gets_one_terminal_status(tmp_path, local_ray):
    with HostileServer(slow_seconds=3.0) as server:
        urls = [server.url(p) for p in STATUS_OF_PATH] + [
            "http://does-not-exist.invalid/page",
            "http://127.0.0.1:9/closed",
        ]
        stats = run_stage(
            CRAWL, [str(write_urls(tmp_path / "urls.parquet", urls))], str(tmp_path / "pages"), crawl_config()
        )
        hits = dict(server.hits)
    pages = pq.read_table(tmp_path / "pages")
    assert pages.num_rows == len(urls) == stats.input == stats.output
    assert sorted(pages.column("url").to_pylist()) == sorted(urls)
    status = dict(zip(pages.column("url").to_pylist(), pages.column("status").to_pylist()))
    rows_by_url = {r["url"]: (r["status"], r["http_status"], r["error"]) for r in pages.to_pylist()}
    for path, expected in STATUS_OF_PATH.items():
        assert status[server.url(path)] == expected, (path, rows_by_url[server.url(path)], hits.get(path))
    assert status["http://does-not-exist.invalid/page"] == "dns_error"
    # nothing listens: robots.txt is refused twice, so the host is unreachable (RFC 9309: disallow)
    assert status["http://127.0.0.1:9/closed"] == "host_unreachable"
    assert "robots.txt" in rows_by_url["http://127.0.0.1:9/closed"][2]
    rows = {r["url"]: r for r in pages.to_pylist()}
    ok = rows[server.url("/ok")]
    assert ok["html"].startswith(b"<html>") and ok["http_status"] == 200
    assert rows[server.url("/redirect")]["final_url"] == server.url("/ok")
    assert rows[server.url("/not-found")]["http_status"] == 404
    assert rows[server.url("/pdf")]["html"] is None
    assert hits.get("/private/page", 0) == 0  # robots.txt was read before the page
    assert hits["/server-error"] == 2  # one retry for a 5xx
    assert hits["/retry-after-long"] == 1  # an hour's Retry-After is over the cap: not retried
    assert "Retry-After 3600 s" in rows[server.url("/retry-after-long")]["error"]
    assert hits["/retry-after-short"] == 2  # retried after its 1 s Retry-After
    assert hits["/too-many-requests"] == 2  # a 429 with a short Retry-After too
    assert rows[server.url("/many-chunks")]["html"] == rows[server.url("/ok")]["html"]
    assert (
        sum(1 for p in hits if p.startswith("/chain/") and int(p.rsplit("/", 1)[1]) > 30) == 6
    )  # 1 + max_redirects hops
    assert stats.outcomes["ok"] == 8

    # The pages a hostile server sends come out of extraction repaired or counted, never as a crash.
    docs_stats = run_stage(EXTRACT, [str(tmp_path / "pages")], str(tmp_path / "docs"), ExtractConfig(min_words=20))
    docs = {r["url"]: r["text"] for r in pq.read_table(tmp_path / "docs").to_pylist()}
    assert docs_stats.input == len(urls) and docs_stats.input == docs_stats.output + sum(docs_stats.dropped.values())
    assert (
        "café article, naïve résumé" in docs[server.url("/wrong-charset")]
        and "\ufffd" not in docs[server.url("/wrong-charset")]
    )
    assert "Paragraph 19" in docs[server.url("/malformed")]


def test_private_addresses_are_refused_by_default(tmp_path, local_ray):
    with HostileServer() as server:
        urls = [
            server.url("/ok"),
            f"http://localhost:{server.server.server_port}/ok",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x",
            "http://10.0.0.1/x",
        ]
        run_stage(
            CRAWL,
            [str(write_urls(tmp_path / "urls.parquet", urls))],
            str(tmp_path / "pages"),
            CrawlConfig(timeout_s=1.0, retries=0),
        )
        assert CrawlConfig().allowed_networks == []
        hits = dict(server.hits)
    pages = pq.read_table(tmp_path / "pages")
    assert pages.column("status").to_pylist() == ["blocked_address"] * len(urls)
    assert hits == {}  # not even robots.txt was requested


def test_non_http_schemes_are_refused_by_scheme(tmp_path, local_ray):
    """file:, data: and ftp: URLs given straight to the crawl (not via harvest) are refused before any
    lookup, even with every network allowed."""
    urls = ["file:///etc/passwd", "data:text/html,<p>hi</p>", "ftp://127.0.0.1/x", "s3://bucket/key"]
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": urls}), path)
    run_stage(CRAWL, [str(path)], str(tmp_path / "pages"), crawl_config(allowed_networks=["0.0.0.0/0", "::/0"]))
    pages = pq.read_table(tmp_path / "pages").to_pylist()
    assert sorted(p["url"] for p in pages) == sorted(urls)
    assert {p["status"] for p in pages} == {"blocked_scheme"} and all(p["html"] is None for p in pages)


def test_redirect_into_metadata_address_is_refused_at_the_hop(tmp_path, local_ray):
    """Loopback allowed (the test server), link-local not: the redirect hop to 169.254.169.254 is checked."""
    with HostileServer() as server:
        urls = [server.url("/redirect-to-metadata")]
        run_stage(
            CRAWL, [str(write_urls(tmp_path / "urls.parquet", urls))], str(tmp_path / "pages"), crawl_config(retries=0)
        )
        hits = dict(server.hits)
    page = pq.read_table(tmp_path / "pages").to_pylist()[0]
    assert page["status"] == "blocked_address" and "169.254.169.254" in page["error"]
    assert hits["/redirect-to-metadata"] == 1


def test_a_plain_text_list_of_urls_is_crawled_and_a_rerun_skips(tmp_path, local_ray):
    with HostileServer() as server:
        urls_path = tmp_path / "urls.txt"
        urls_path.write_text(f"{server.url('/ok')}\n\n{server.url('/pdf')}\n")
        stats = run_stage(CRAWL, [str(urls_path)], str(tmp_path / "pages"), crawl_config())
        first = dict(server.hits)
        again = run_stage(CRAWL, [str(urls_path)], str(tmp_path / "pages"), crawl_config())
        assert dict(server.hits) == first  # nothing fetched again
    assert stats.output == again.output == 2 and stats.outcomes == {"ok": 1, "not_html": 1}
    pages = pq.read_table(tmp_path / "pages")
    assert sorted(pages.column("domain").to_pylist()) == ["127.0.0.1", "127.0.0.1"]
    assert pages.column("karma").to_pylist() == [0, 0]
    with HostileServer() as server:  # a per-domain cap: the URLs past it are not requested, and counted
        urls_path.write_text("".join(f"{server.url(f'/page/{i}')}\n" for i in range(5)))
        capped = run_stage(CRAWL, [str(urls_path)], str(tmp_path / "capped"), crawl_config(max_urls_per_domain=2))
        assert sum(n for p, n in server.hits.items() if p.startswith("/page/")) == 2
    assert capped.outcomes == {"ok": 2, "domain_cap": 3} and capped.output == 5


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("127.0.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("224.0.0.1", False),
        ("100.64.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2606:4700::1111", True),
        ("::7f00:1", False),
        ("::127.0.0.1", False),
        ("::a9fe:a9fe", False),
        ("::808:808", False),
        ("::ffff:7f00:1", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_is_public(address, public):
    assert is_public(address) is public


def test_crawl_writes_to_object_storage(tmp_path, local_ray, s3_server):
    from webtext.core import storage

    with HostileServer() as server:
        urls = tmp_path / "urls.txt"
        urls.write_text(f"{server.url('/ok')}\n{server.url('/page/1')}\n")
        out = f"{s3_server}/crawl-out"
        stats = run_stage(CRAWL, [str(urls)], out, crawl_config())
    assert stats.output == 2 and stats.outcomes == {"ok": 2}
    assert sum(storage.parquet_metadata(f).num_rows for f in storage.parquet_files(out)) == 2
    assert not storage.exists(f"{out}/_scratch")


def test_rows_without_a_url_are_counted_and_kept_as_examples(tmp_path, local_ray, capsys):
    """A harvest of another tool may leave empty URLs: each is dropped as no_url, and `webtext inspect`
    shows which submissions they were."""
    from webtext.cli import main

    with HostileServer() as server:
        rows = [
            {"url": server.url("/ok"), "domain": "127.0.0.1", "reddit_ids": ["t3_a"], "titles": ["kept"], "karma": 3},
            *({"url": "", "reddit_ids": [f"t3_{i}"], "titles": [f"empty {i}"], "karma": 5} for i in range(3)),
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=URLS), tmp_path / "urls.parquet")
        out = tmp_path / "pages"
        code = main(["crawl", str(tmp_path / "urls.parquet"), "--out", str(out), "--allow-network", "127.0.0.0/8"])
    assert code == 0
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["input"] == 4 and stats["output"] == 1 and stats["dropped"] == {"no_url": 3}
    capsys.readouterr()
    assert main(["inspect", str(out), "--dropped", "no_url", "-n", "5"]) == 0
    shown = capsys.readouterr().out
    assert all(f"t3_{i}" in shown and f"empty {i}" in shown for i in range(3)) and "t3_a" not in shown
