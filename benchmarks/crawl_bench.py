"""Crawl stage vs a minimal Scrapy spider: pages/s on loopback hosts, same concurrency, runs alternated;
then a crawl killed with SIGKILL at about 50% and rerun, counting the pages fetched twice.

    .venv/bin/python benchmarks/crawl_bench.py --pages 3000 --hosts 10 --rounds 2

Servers: one ThreadingHTTPServer per host (127.0.0.2, 127.0.0.3, ...) in a separate process, so
neither crawler shares a GIL with them. Ray start is excluded from the stage's pages/s and reported
with the end-to-end time of a fresh `python -c` driver.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_server import HostileServer  # noqa: E402

CONCURRENCY = dict(concurrent_requests=64, concurrent_requests_per_domain=8)

BARE = (
    """
import sys, scrapy
from scrapy.crawler import CrawlerProcess
urls = open(sys.argv[1]).read().split()
class Bare(scrapy.Spider):
    name = "bare"
    async def start(self):
        for u in urls:
            yield scrapy.Request(u, dont_filter=True)
    def parse(self, response):
        yield {"url": response.url, "status": response.status, "body": response.body}
p = CrawlerProcess({"CONCURRENT_REQUESTS": %(concurrent_requests)d, "CONCURRENT_REQUESTS_PER_DOMAIN": %(concurrent_requests_per_domain)d,
                    "ROBOTSTXT_OBEY": True, "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, "COOKIES_ENABLED": False})
p.crawl(Bare); p.start()
"""
    % CONCURRENCY
)

STAGE = """
import sys, time
t0 = time.perf_counter()
from crawler.crawl import CRAWL
from webtext.core.config import CrawlConfig
from webtext.core.runner import init_ray, run_stage
init_ray(address="local", num_cpus=%(cpus)d)
t1 = time.perf_counter()
stats = run_stage(CRAWL, [sys.argv[1]], sys.argv[2], CrawlConfig(**%(config)r))
t2 = time.perf_counter()
print(f"RESULT {t1 - t0:.2f} {t2 - t1:.2f} {stats.output} {dict(stats.outcomes)}", flush=True)
"""


def serve(hosts: list[str], port: int, ready, counts):
    servers = [HostileServer(host=h, port=port).__enter__() for h in hosts]
    ready.set()
    while True:
        time.sleep(0.2)
        counts.update({f"{s.host}{p}": n for s in servers for p, n in list(s.hits.items())})


def run(cmd: list[str], **kwargs) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, **kwargs).stdout
    return time.perf_counter() - t, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--units-per-cpu", type=int, default=None, help="crawl.units_per_cpu (default: the config's)")
    parser.add_argument(
        "--checkpoint-rows", type=int, default=None, help="crawl.checkpoint_rows (default: the config's)"
    )
    parser.add_argument("--skip-resume", action="store_true")
    args = parser.parse_args()
    hosts = [f"127.0.0.{i}" for i in range(2, 2 + args.hosts)]
    port = 18000 + os.getpid() % 1000
    manager = mp.Manager()
    counts = manager.dict()
    ready = mp.Event()
    server = mp.Process(target=serve, args=(hosts, port, ready, counts), daemon=True)
    server.start()
    ready.wait()
    work = Path(tempfile.mkdtemp(prefix="crawl-bench-"))
    urls = [f"http://{hosts[i % len(hosts)]}:{port}/page/{i}" for i in range(args.pages)]
    (work / "urls.txt").write_text("\n".join(urls) + "\n")
    config = dict(allowed_networks=["127.0.0.0/8"], autothrottle=False, timeout_s=10.0, retries=0, **CONCURRENCY)
    if args.units_per_cpu:
        config["units_per_cpu"] = args.units_per_cpu
    if args.checkpoint_rows:
        config["checkpoint_rows"] = args.checkpoint_rows
    stage = STAGE % {"cpus": args.cpus, "config": config}
    bare_rates, stage_rates, e2e = [], [], []
    for r in range(args.rounds):
        seconds, _ = run([sys.executable, "-c", BARE, str(work / "urls.txt")])
        bare_rates.append(args.pages / seconds)
        shutil.rmtree(work / "out", ignore_errors=True)
        total, out = run([sys.executable, "-c", stage, str(work / "urls.txt"), str(work / "out")])
        line = next(row for row in out.splitlines() if row.startswith("RESULT"))
        ray_start, crawl, n = line.split()[1:4]
        assert int(n) == args.pages, line
        stage_rates.append(args.pages / float(crawl))
        e2e.append(args.pages / total)
        print(
            f"round {r}: bare spider {bare_rates[-1]:.0f} pages/s | crawl stage {stage_rates[-1]:.0f} pages/s "
            f"(Ray start {float(ray_start):.1f}s excluded) | stage end to end {e2e[-1]:.0f} pages/s",
            flush=True,
        )
    ratios = sorted(s / b for s, b in zip(stage_rates, bare_rates))
    print(
        f"crawl stage / bare Scrapy per round: {', '.join(f'{x:.2f}x' for x in ratios)}; best of each: "
        f"{max(stage_rates) / max(bare_rates):.2f}x; end to end with Ray start {max(e2e) / max(bare_rates):.2f}x"
    )

    if args.skip_resume:
        return
    # resume: kill at ~50%, rerun, count pages fetched twice
    shutil.rmtree(work / "out", ignore_errors=True)
    time.sleep(0.5)
    base = dict(counts)  # the servers' counters are cumulative over the rounds above

    def hits():
        return {k: v - base.get(k, 0) for k, v in counts.items() if "/page/" in k and v > base.get(k, 0)}

    driver = subprocess.Popen(
        [sys.executable, "-c", stage, str(work / "urls.txt"), str(work / "out")],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    while sum(hits().values()) < args.pages // 2:
        time.sleep(0.02)
    for entry in Path("/proc").iterdir():  # the driver's session: it, its Ray, its workers
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == driver.pid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    driver.wait()
    time.sleep(0.5)
    before = hits()
    run([sys.executable, "-c", stage, str(work / "urls.txt"), str(work / "out")])
    time.sleep(0.5)
    after = hits()
    refetched = sum(1 for k, v in before.items() if after[k] > v)
    print(
        f"resume: killed after {len(before)} of {args.pages} pages requested; rerun fetched {len(after) - len(before)} new "
        f"and {refetched} again ({refetched / len(before):.1%} of those requested before the kill)"
    )
    print(f"peak RSS of child processes: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
