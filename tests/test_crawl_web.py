"""The crawl against a simulated unhealthy web (tests/simweb.py): every URL ends as the simulator says,
dead hosts are given up without fetching their URLs, slow and flaky hosts are not, robots.txt follows
RFC 9309 with its own deadline, names resolve through the simulator's DNS server once per host."""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawler.crawl import CRAWL
from tests.simweb import FAILING_KINDS, HEALTHY_KINDS, SimulatedWeb, make_web
from webtext.core.config import CrawlConfig
from webtext.core.runner import run_stage

pytestmark = pytest.mark.slow

EVERY_KIND = list(HEALTHY_KINDS + FAILING_KINDS)


def crawl(tmp_path, web, **overrides):
    pq.write_table(pa.table({"url": web.urls()}), tmp_path / "urls.parquet")
    settings = dict(
        allowed_networks=["127.0.0.0/8"],
        dns_servers=[f"127.0.0.1:{web.dns_port}"],
        timeout_s=10.0,
        robots_timeout_s=2.0,
        retries=1,
        unit_urls=100,
    )
    settings.update(overrides)
    start = time.monotonic()
    stats = run_stage(CRAWL, [str(tmp_path / "urls.parquet")], str(tmp_path / "pages"), CrawlConfig(**settings))
    pages = pq.read_table(tmp_path / "pages", columns=["url", "status", "error"]).to_pylist()
    return stats, pages, time.monotonic() - start


def host_of(web, url):
    name = url.split("/")[2].rsplit(":", 1)[0]
    return next(h for h in web.hosts if name in (h.name, h.address))


def test_every_url_ends_as_the_simulated_web_says(tmp_path, local_ray):
    web = make_web(36, 400, seed=3, kinds=EVERY_KIND)
    with SimulatedWeb(web) as sim:
        stats, pages, seconds = crawl(tmp_path, web)
        served = sim_stats(sim)
    assert len(pages) == stats.input == stats.output == 400
    wrong = Counter()
    for row in pages:
        host = host_of(web, row["url"])
        expected = web.status(host, "/" + row["url"].split("/", 3)[3])
        if row["status"] != expected:
            wrong[(host.kind, row["status"], expected)] += 1
    assert not wrong, wrong
    assert dict(stats.outcomes) == dict(web.expected())
    # no healthy page lost: every URL ended ok is one the simulator served (redirects: at their target)
    assert stats.outcomes["ok"] == sum(served["served"].values())
    for host in web.hosts:
        if host.kind in ("refused", "nxdomain", "robots_hang", "blackhole", "robots_5xx"):
            # given up after robots.txt: no page of a dead host was requested
            assert served["requests"].get(host.name, 0) <= 2, (host, served["requests"].get(host.name))
        if host.kind in ("slow", "flaky"):  # slow but alive, or failing at first: not condemned
            assert served["served"][host.name] == host.urls, host
    # one lookup per name and unit (the redirect target is reached from several units)
    assert {n for name, n in served["queries"].items() if name != web.redirect_to} == {1}, served["queries"]
    # dead hosts cost one robots.txt deadline, not a timeout per URL and retry
    assert seconds < web.lower_bound(8, 2.0, 10.0, 1) + 60


def sim_stats(sim) -> dict:
    return {k: Counter(v) for k, v in sim.stats().items()}


def test_hosts_that_never_answer_are_given_up_after_a_few_connections(tmp_path, local_ray):
    """Without robots.txt, host health alone: a server that has not answered gets one connection at a
    time; after `host_failures` failed ones its other URLs end as host_unreachable with no connection;
    servers that answered keep every URL."""
    web = make_web(
        6, 240, seed=5, kinds=["refused", "blackhole", "healthy", "flaky", "errors", "healthy"], zipf=0.0, names=False
    )
    with SimulatedWeb(web) as sim:
        _, pages, seconds = crawl(
            tmp_path, web, obey_robots_txt=False, timeout_s=2.0, host_failures=3, concurrent_requests_per_domain=4
        )
        served = sim_stats(sim)
    by_kind: dict[str, Counter] = {}
    for row in pages:
        by_kind.setdefault(host_of(web, row["url"]).kind, Counter())[row["status"]] += 1
    dead = {h.kind: h for h in web.hosts if h.kind in ("refused", "blackhole")}
    assert by_kind["blackhole"] == Counter({"timeout": 3, "host_unreachable": dead["blackhole"].urls - 3})
    assert served["connections"][dead["blackhole"].name] == 3
    # refused connections are retried (cheap), and a retry counts as a failed connection too
    assert by_kind["refused"]["host_unreachable"] >= dead["refused"].urls - 3
    assert set(by_kind["refused"]) <= {"connection_error", "host_unreachable"}
    assert by_kind["flaky"] == Counter({"ok": next(h.urls for h in web.hosts if h.kind == "flaky")})
    assert set(by_kind["healthy"]) == {"ok"} and set(by_kind["errors"]) <= {"ok", "http_error"}
    assert seconds < 60  # one 2 s timeout round for the silent host, not one per URL


def test_an_unanswering_resolver_ends_every_name_at_its_deadline(tmp_path, local_ray):
    web = make_web(5, 50, seed=7, kinds=["healthy"])
    with SimulatedWeb(web) as sim:
        _, pages, seconds = crawl(tmp_path, web, dns_servers=[f"127.0.0.1:{web.silent_dns_port}"], dns_timeout_s=1.0)
        served = sim_stats(sim)
    assert {row["status"] for row in pages} == {"dns_error"}
    assert all("no answer within 1 s" in row["error"] for row in pages)
    assert not served["connections"]
    assert seconds < 60


def test_robots_txt_by_rfc_9309(tmp_path, local_ray):
    """404: no rules, fetched; 503: complete disallow; no answer: the host is unreachable, after the
    robots deadline (2 s), not the response timeout (30 s)."""
    web = make_web(3, 30, seed=9, kinds=["robots_4xx", "robots_5xx", "robots_hang"], zipf=0.0)
    with SimulatedWeb(web):
        _, pages, seconds = crawl(tmp_path, web, timeout_s=30.0, robots_timeout_s=2.0)
    statuses = {host_of(web, row["url"]).kind: row["status"] for row in pages}
    assert statuses == {"robots_4xx": "ok", "robots_5xx": "robots_unreachable", "robots_hang": "host_unreachable"}
    assert seconds < 30
