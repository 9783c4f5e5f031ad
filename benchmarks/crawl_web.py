"""The crawl stage against a minimal Scrapy spider on a simulated unhealthy web (tests/simweb.py), runs
alternated, same politeness settings; both against the simulator's lower bound.

    .venv/bin/python benchmarks/crawl_web.py --hosts 300 --urls 20000 --rounds 1 [--cap 900]

Hosts are addressed by their own 127.x addresses (the minimal spider has no resolver for the
simulator's names; the names and the DNS server are exercised by tests/test_crawl_web.py). The spider
is stopped after `--cap` seconds if it has not finished (then its figure is a bound: "> cap"). The
stage runs in a fresh driver process; Ray start is excluded. Peak RSS is sampled (psutil) over the
stage's process tree: the largest Ray worker is the memory a crawl worker needs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.simweb import SimulatedWeb, describe, make_web  # noqa: E402

POLITENESS = dict(concurrent_requests=64, concurrent_requests_per_domain=8, timeout_s=10.0, retries=2)

BARE = """
import json, sys, time, scrapy
from scrapy.crawler import CrawlerProcess
urls = open(sys.argv[1]).read().split()
ended = {}
class Bare(scrapy.Spider):
    name = "bare"
    async def start(self):
        for u in urls:
            yield scrapy.Request(u, dont_filter=True, errback=self.failed, meta={"u": u})
    def parse(self, response):
        ended[response.meta["u"]] = "ok" if response.status == 200 else "http_error"
    def failed(self, failure):
        ended[failure.request.meta["u"]] = type(failure.value).__name__
t = time.perf_counter()
p = CrawlerProcess({"CONCURRENT_REQUESTS": %(concurrent_requests)d, "CONCURRENT_REQUESTS_PER_DOMAIN": %(concurrent_requests_per_domain)d,
                    "DOWNLOAD_TIMEOUT": %(timeout_s)s, "RETRY_TIMES": %(retries)d, "AUTOTHROTTLE_ENABLED": True,
                    "AUTOTHROTTLE_TARGET_CONCURRENCY": %(concurrent_requests_per_domain)d.0, "ROBOTSTXT_OBEY": True,
                    "CLOSESPIDER_TIMEOUT": float(sys.argv[2]), "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False,
                    "COOKIES_ENABLED": False})
p.crawl(Bare); p.start()
print("RESULT", json.dumps({"seconds": time.perf_counter() - t, "ended": len(ended), "ok": sum(v == "ok" for v in ended.values())}))
"""

STAGE = """
import json, sys, time
from crawler.crawl import CRAWL
from webtext.core.config import CrawlConfig
from webtext.core.runner import init_ray, run_stage
init_ray(address="local", num_cpus=%(cpus)d)
t = time.perf_counter()
stats = run_stage(CRAWL, [sys.argv[1]], sys.argv[2], CrawlConfig(**%(config)r))
print("RESULT", json.dumps({"seconds": time.perf_counter() - t, "ended": stats.output, "outcomes": stats.outcomes}))
"""


def run(argv: list[str]) -> tuple[dict, float, float]:
    """Run a driver; its RESULT, the largest RSS (MB) of a process under it (a Ray worker), and the CPU
    seconds of its whole process tree (sampled every 0.5 s: a process's last sample counts)."""
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak, cpu = {"mb": 0.0}, {}
    done = threading.Event()

    def watch():
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for p in tree:
                try:
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system
                    if p.pid != process.pid:
                        peak["mb"] = max(peak["mb"], p.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    out, _ = process.communicate()
    done.set()
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    return json.loads(line.split(" ", 1)[1]), peak["mb"], sum(cpu.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--urls", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--cap", type=float, default=900.0, help="seconds after which the spider is stopped (0: no spider)"
    )
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--units-per-cpu", type=int, default=None, help="crawl.units_per_cpu (default: the config's)")
    args = parser.parse_args()
    web = make_web(args.hosts, args.urls, seed=args.seed, names=False)
    config = dict(allowed_networks=["127.0.0.0/8"], **POLITENESS)
    if args.units_per_cpu:
        config["units_per_cpu"] = args.units_per_cpu
    robots_timeout = 5.0
    bound = web.lower_bound(
        POLITENESS["concurrent_requests_per_domain"], robots_timeout, POLITENESS["timeout_s"], POLITENESS["retries"]
    )
    print(json.dumps(describe(web)))
    print(f"lower bound {bound:.0f} s; a correct crawl ends {dict(web.expected())}", flush=True)
    with SimulatedWeb(web) as sim, tempfile.TemporaryDirectory(prefix="crawl-web-") as tmp:
        work = Path(tmp)
        urls = web.urls()
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        pq.write_table(pa.table({"url": urls}), work / "urls.parquet")
        stage = STAGE % {"cpus": args.cpus, "config": config}
        for r in range(args.rounds):
            subprocess.run(["rm", "-rf", str(work / "out")], check=True)
            served_before = sum(sim.stats()["served"].values())
            result, peak, cpu = run([sys.executable, "-c", stage, str(work / "urls.parquet"), str(work / "out")])
            served = sum(sim.stats()["served"].values()) - served_before
            outcomes = Counter(result["outcomes"])
            print(
                f"round {r}: stage {result['seconds']:.0f} s ({result['seconds'] / bound:.2f}x the lower bound), "
                f"{result['ended']} URLs ended, ok {outcomes['ok']} (simulator served {served}, a correct crawl "
                f"{web.expected()['ok']}), peak worker RSS {peak:.0f} MB, CPU {cpu:.0f} s "
                f"({1000 * cpu / len(urls):.2f} s per 1000 URLs, Ray included); {dict(outcomes)}",
                flush=True,
            )
            if args.cap <= 0:
                continue
            bare, _, bare_cpu = run([sys.executable, "-c", BARE % POLITENESS, str(work / "urls.txt"), str(args.cap)])
            stopped = bare["ended"] < len(urls)
            print(
                f"round {r}: minimal spider {'stopped at' if stopped else 'ended in'} {bare['seconds']:.0f} s with "
                f"{bare['ended']} URLs ended ({bare['ended'] / len(urls):.0%}), ok {bare['ok']}, CPU {bare_cpu:.0f} s; stage is "
                f"{'>' if stopped else ''}{bare['seconds'] / result['seconds']:.2f}x faster",
                flush=True,
            )


if __name__ == "__main__":
    main()
