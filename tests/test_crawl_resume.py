"""A crawl killed with SIGKILL midway resumes on another cluster size without refetching what it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from crawler.crawl import CRAWL, UnitsTask, interleave_domains, units_task
from tests.hostile_server import HostileServer
from webtext.core.config import CrawlConfig
from webtext.core.runner import run_stage
from webtext.core.schemas import PROVENANCE_FIELDS

HOSTS = [f"127.0.0.{i}" for i in range(2, 7)]
PER_HOST = 50
CONFIG = dict(
    allowed_networks=["127.0.0.0/8"],
    autothrottle=False,
    timeout_s=5.0,
    retries=0,
    unit_urls=75,
    concurrent_requests=8,
    concurrent_requests_per_domain=2,
    checkpoint_rows=8,
    units_per_cpu=2,
)

DRIVER = """
import sys
from crawler.crawl import CRAWL
from webtext.core.config import CrawlConfig
from webtext.core.runner import init_ray, run_stage
init_ray(address="local", num_cpus=1)
run_stage(CRAWL, [sys.argv[1]], sys.argv[2], CrawlConfig(**{config}))
"""


def session_pids(sid: int) -> list[int]:
    """Processes of the session the killed driver led (it, its Ray and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def test_killed_crawl_resumes_without_refetching(tmp_path, local_ray):
    servers = [HostileServer(host=h, page_seconds=0.02).__enter__() for h in HOSTS]
    try:
        urls = [s.url(f"/page/{i}") for s in servers for i in range(PER_HOST)]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        out = tmp_path / "crawl"
        script = DRIVER.format(config=repr(CONFIG))
        driver = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "urls.txt"), str(out)],
            cwd=Path(__file__).parents[1],
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while sum(s.hits.total() for s in servers) < len(urls) // 2:
            assert driver.poll() is None and time.monotonic() < deadline, "the crawl ended before the kill"
            time.sleep(0.05)
        for pid in session_pids(driver.pid):
            os.kill(pid, signal.SIGKILL)
        driver.wait()
        before = {(s.host, p): n for s in servers for p, n in s.hits.items() if p.startswith("/page/")}
        assert len(urls) // 3 < len(before) < len(urls)
        stats = run_stage(CRAWL, [str(tmp_path / "urls.txt")], str(out), CrawlConfig(**CONFIG))
        after = {(s.host, p): n for s in servers for p, n in s.hits.items() if p.startswith("/page/")}
    finally:
        for s in servers:
            s.__exit__()
    refetched = sum(1 for key, n in before.items() if after[key] > n)
    # Only pages in flight or not yet flushed to a chunk when the process died are fetched again: at
    # most, for each unit being crawled (units_per_cpu on the one CPU), its requests in flight and its
    # rows not yet checkpointed, and a 10% margin for responses queued in Scrapy when the kill lands.
    in_flight = CONFIG["units_per_cpu"] * (CONFIG["concurrent_requests"] + CONFIG["checkpoint_rows"])
    assert refetched < 0.1 * len(before) + in_flight, (refetched, len(before))
    assert len(after) == len(urls) and stats.input == stats.output == len(urls) and stats.outcomes == {"ok": len(urls)}
    pages = pq.read_table(out)
    assert sorted(pages.column("url").to_pylist()) == sorted(urls)
    assert not (out / "_scratch").exists() and not list(out.rglob("*.tmp"))


def test_units_hold_whole_domains_and_are_bounded(tmp_path):
    import pyarrow as pa

    rows = [
        {"url": f"http://{d}.example.com/{i}", "domain": f"{d}.example.com"}
        for d, n in [("a", 40), ("b", 70), ("c", 10), ("d", 250), ("e", 5)]
        for i in range(n)
    ]
    schema = pa.schema(PROVENANCE_FIELDS)
    bucket = tmp_path / "split" / "b00003"
    bucket.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[::-1], schema=schema), bucket / "f00000-00000.parquet")
    units = units_task(UnitsTask(str(bucket), str(tmp_path / "units"), 100))
    assert [u["name"] for u in units] == [f"b00003-u{i:04d}" for i in range(len(units))]
    seen = {}
    for unit in units:
        table = pq.read_table(tmp_path / "units" / f"{unit['name']}.parquet")
        assert table.num_rows == unit["rows"]
        domains = set(table.column("domain").to_pylist())
        assert unit["rows"] <= 100 or len(domains) == 1  # a domain bigger than a unit is a unit alone
        for d in domains:
            assert d not in seen  # a domain is never in two units
            seen[d] = unit["name"]
    assert sum(u["rows"] for u in units) == len(rows) and len(seen) == 5
    assert units == units_task(UnitsTask(str(bucket), str(tmp_path / "units2"), 100))  # deterministic


def test_a_unit_requests_its_domains_round_robin():
    pairs = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("a1", "a"), ("b1", "b"), ("c1", "c"), ("c2", "c")]
    assert interleave_domains(pairs) == ["a1", "b1", "c1", "a2", "c2", "a3"]
