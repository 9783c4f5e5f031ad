"""Crawl: URLs in, one pages row per input row out, in small fixed work units that resume.

The plan (`crawl_plan`):
1. split: each input file (Parquet with at least `url`, or a .txt list of URLs) is read in batches and
   its rows are hashed by registered domain into `crawl.buckets` bucket files;
2. units: one task per bucket cuts it into units of about `crawl.unit_urls` URLs, whole domains only, so
   a domain is crawled by one unit at a time and per-domain politeness holds across the cluster;
3. the unit list is recorded with the fingerprint of the inputs and config (`_scratch/units.json`): it
   depends on neither the cluster size nor the order tasks ran in, so a rerun on any cluster reuses
   exactly the finished units (`part-<unit>.parquet` present) and never mixes stale parts;
4. crawl: one worker process per CPU crawls `crawl.units_per_cpu` units at once (a unit mostly waits on
   the network), units with the largest domain first; each worker keeps one Twisted reactor (it cannot
   restart) in a thread and runs Scrapy crawls on it, unit after unit. Fetched pages stream to small
   chunk files; a unit killed midway reads its chunks back on rerun and fetches only the rest. The
   unit's part file is then written chunk by chunk, joined to the input rows by URL, so a unit's HTML
   is never all in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawler.buckets import bucket_of, by_bucket
from crawler.pipelines import FETCH
from crawler.urls import registered_domain
from webtext.core import storage
from webtext.core.config import CrawlConfig
from webtext.core.runner import (
    InputError,
    Run,
    check_inputs,
    config_fingerprint,
    conform_input,
    input_fingerprint,
    text_lines_table,
)
from webtext.core.schemas import PAGES, PROVENANCE_FIELDS
from webtext.core.stage import Resources, Stage, constant_default, null_default
from webtext.core.stats import StageStats

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt",)
READ_ROWS = 65_536
UNITS_FILE = "units.json"
ROW_GROUP_BYTES = 32 * 2**20  # HTML per row group of a unit's part file
NULL_URL = "no_url"


def domain_of(url: str | None) -> str | None:
    """Registered domain of a URL's host; None for a URL without one."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return registered_domain(host) if host else None


def _domains(batch: pa.Table) -> pa.Array:
    return pa.array([domain_of(u) for u in batch.column("url").to_pylist()], pa.string())


PROVENANCE = pa.schema(PROVENANCE_FIELDS)
CRAWL_OPTIONAL = {
    "domain": (pa.string(), _domains),
    **{f.name: (f.type, null_default(f.type)) for f in PROVENANCE_FIELDS if f.name not in ("url", "domain", "karma")},
    "karma": (pa.int64(), constant_default(0, pa.int64())),
}


def scrapy_settings(config: CrawlConfig, fetch_dir: str) -> dict:
    """Scrapy settings from the crawl config; everything politeness and safety depend on is explicit."""
    return {
        "BOT_NAME": "webtext",
        "USER_AGENT": config.user_agent,
        "ROBOTSTXT_OBEY": config.obey_robots_txt,
        "CONCURRENT_REQUESTS": config.concurrent_requests,
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.concurrent_requests_per_domain,
        "CONCURRENT_ITEMS": 1,  # one item per response: more only spawns idle tasks per response
        "DOWNLOAD_DELAY": config.download_delay_s,
        "DOWNLOAD_DELAY_JITTER": 0.5,  # each delay drawn from 0.5-1.5x DOWNLOAD_DELAY
        "AUTOTHROTTLE_ENABLED": config.autothrottle,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(config.concurrent_requests_per_domain),
        # Every domain starts at once (Scrapy's 5 s start delay held every new and every dead domain
        # to one request per ~6 s); AutoThrottle then adapts each domain to its latency.
        "AUTOTHROTTLE_START_DELAY": config.download_delay_s,
        # Broad crawl: requests are taken for the domains with the fewest in flight, so requests of
        # hosts that do not answer never fill the request slots of those that do.
        "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
        "DOWNLOAD_TIMEOUT": config.timeout_s,
        "DNS_TIMEOUT": config.dns_timeout_s,
        "WEBTEXT_DNS_SERVERS": config.dns_servers,
        "WEBTEXT_CONNECT_TIMEOUT_S": min(config.connect_timeout_s, config.timeout_s),
        "WEBTEXT_ROBOTS_TIMEOUT_S": min(config.robots_timeout_s, config.timeout_s),
        "WEBTEXT_HOST_FAILURES": config.host_failures,
        "RETRY_ENABLED": config.retries > 0,
        "RETRY_TIMES": config.retries,
        "REDIRECT_MAX_TIMES": config.max_redirects,
        "DOWNLOAD_MAXSIZE": config.max_bytes,  # also caps the decompressed size (gzip bombs)
        "DOWNLOAD_WARNSIZE": 0,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOGSTATS_INTERVAL": 0,
        "LOG_LEVEL": "ERROR",
        "LOG_INSTALL_ROOT_HANDLER": False,
        "HTTPERROR_ALLOW_ALL": False,
        "DOWNLOADER_MIDDLEWARES": {
            "crawler.middlewares.AddressGuardMiddleware": 50,
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "crawler.middlewares.RobotsTxtMiddleware": 100,
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "crawler.middlewares.RetryAfterMiddleware": 550,
        },
        # Only http(s) is ever fetched (the address guard refuses other schemes first, by scheme).
        "DOWNLOAD_HANDLERS": {
            "file": None,
            "data": None,
            "s3": None,
            "ftp": None,
            "http": "crawler.handlers.HealthyHostsHandler",
            "https": "crawler.handlers.HealthyHostsHandler",
        },
        "ITEM_PIPELINES": {"crawler.pipelines.ChunkedPagesPipeline": 100},
        "WEBTEXT_ALLOWED_NETWORKS": config.allowed_networks,
        "WEBTEXT_RETRY_AFTER_MAX_S": config.retry_after_max_s,
        "WEBTEXT_FETCH_DIR": fetch_dir,
        "WEBTEXT_CHUNK_ROWS": config.checkpoint_rows,
        "WEBTEXT_CHUNK_SECONDS": config.checkpoint_s,
    }


_REACTOR = None
_REACTOR_LOCK = threading.Lock()


def _reactor():
    """This worker's Twisted reactor, running in a thread of its own from the first unit on: a reactor
    cannot restart, and one worker process crawls several units at once and unit after unit (its
    start and Scrapy's import paid once)."""
    global _REACTOR
    with _REACTOR_LOCK:
        if _REACTOR is None:
            from scrapy.utils.reactor import install_reactor

            install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
            from twisted.internet import reactor

            threading.Thread(
                target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True, name="reactor"
            ).start()
            _REACTOR = reactor
    return _REACTOR


def crawl_urls(urls: list[str], config: CrawlConfig, fetch_dir: str, **settings) -> None:
    """Fetch `urls` with Scrapy on this process's reactor, streaming results to chunk files."""
    from twisted.internet.threads import blockingCallFromThread

    reactor = _reactor()

    def start():
        from scrapy.crawler import CrawlerRunner

        from crawler.dns import LookupResolver, lookups_of
        from crawler.spider import PageSpider

        runner = CrawlerRunner(scrapy_settings(config, fetch_dir) | settings)
        LookupResolver(reactor, lookups_of(runner)).install_on_reactor()  # the reactor's: one per worker
        return runner.crawl(PageSpider, urls=urls)

    blockingCallFromThread(reactor, start)


# -- step 1: split inputs into domain buckets -------------------------------------------------------


@dataclass(frozen=True)
class SplitTask:
    source: str  # a Parquet or .txt file
    index: int
    buckets: int
    folder: str


def _batches(source: str):
    if source.endswith(TEXT_SUFFIXES):
        table = text_lines_table(source, "url")
        yield from table.to_batches(READ_ROWS)
        return
    with storage.open_input(source) as f:
        reader = pq.ParquetFile(f)
        names = [n for n in CRAWL.input_columns() if n in reader.schema_arrow.names]
        yield from reader.iter_batches(READ_ROWS, columns=names)


def split_task(task: SplitTask) -> dict:
    """Rows of one input file into bucket files by registered domain; returns counts."""
    rows = dropped = 0
    filled: set[int] = set()
    for n, batch in enumerate(_batches(task.source)):
        table = conform_input(CRAWL, pa.Table.from_batches([batch]))
        rows += table.num_rows
        urls = table.column("url")
        missing = pc.or_(pc.is_null(urls), pc.equal(urls, ""))
        missing = pc.fill_null(missing, True)
        if pc.any(missing).as_py():
            bad = pc.sum(missing).as_py()
            log.warning("%s: %d rows without a URL, counted as %s", task.source, bad, NULL_URL)
            dropped += bad
            table = table.filter(pc.invert(missing))
        domains = table.column("domain")
        if domains.null_count:  # a present `domain` column with gaps: compute them
            computed = _domains(table)
            table = table.set_column(table.column_names.index("domain"), "domain", pc.coalesce(domains, computed))
        table = table.select(PROVENANCE.names).cast(PROVENANCE)
        ids = bucket_of(table.column("domain"), task.buckets)
        for bucket, part in by_bucket(table, ids):
            path = storage.join(task.folder, f"b{bucket:05d}", f"f{task.index:05d}-{n:05d}.parquet")
            storage.write_parquet(path, part, compression="zstd")
            filled.add(bucket)
    return {"rows": rows, "dropped": dropped, "buckets": sorted(filled)}


# -- step 2: cut buckets into units -----------------------------------------------------------------


@dataclass(frozen=True)
class UnitsTask:
    bucket: str  # folder of one bucket's rows
    units: str  # folder of unit input files
    unit_urls: int


def units_task(task: UnitsTask) -> list[dict]:
    """Cut a bucket into units of whole domains, about `unit_urls` rows each (a bigger domain alone)."""
    tables = []
    for location in storage.list_files(task.bucket, (".parquet",)):
        with storage.open_input(location) as f:
            tables.append(pq.read_table(f))
    rows = pa.concat_tables(tables).sort_by([("domain", "ascending"), ("url", "ascending")])
    name = storage.name(task.bucket)
    domains = rows.column("domain").to_pylist()
    units, start = [], 0
    while start < len(domains):
        end = min(start + task.unit_urls, len(domains))
        while end < len(domains) and domains[end] == domains[end - 1]:
            end += 1  # finish the domain
        if end - start > task.unit_urls and domains[start] != domains[end - 1]:
            end = start + 1  # the unit would be too big: end it before the domain that overflowed
            while domains[end] == domains[start]:
                end += 1
            # take every whole domain that still fits
            while end < len(domains):
                nxt = end
                while nxt < len(domains) and domains[nxt] == domains[end]:
                    nxt += 1
                if nxt - start > task.unit_urls:
                    break
                end = nxt
        unit = f"{name}-u{len(units):04d}"
        storage.write_parquet(
            storage.join(task.units, f"{unit}.parquet"), rows.slice(start, end - start), compression="zstd"
        )
        largest = max(Counter(domains[start:end]).values())
        units.append({"name": unit, "rows": end - start, "largest_domain": largest})
        start = end
    return units


# -- step 3: crawl one unit -------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitTask:
    name: str
    rows: str  # the unit's input rows
    fetch: str  # folder of its fetch chunks
    part: str  # its output part file
    config: CrawlConfig
    progress: bool = False
    niceness: int = 0
    urls: int = 0
    largest_domain: int = 0


def fetched_urls(fetch_dir: str) -> tuple[set[str], int]:
    """URLs already in a unit's chunk files, and the next chunk number."""
    done: set[str] = set()
    chunks = storage.list_files(fetch_dir, (".parquet",)) if storage.exists(fetch_dir) else []
    for location in chunks:
        with storage.open_input(location) as f:
            done.update(pq.read_table(f, columns=["url"]).column("url").to_pylist())
    last = max((int(storage.name(c)[1:7]) for c in chunks), default=-1)
    return done, last + 1


def crawl_unit(task: UnitTask) -> dict:
    """Fetch a unit's URLs (those not already in its chunks), then write its part file."""
    try:  # Ray starts workers at a lower priority than the driver; a crawl should not lag behind it
        os.setpriority(os.PRIO_PROCESS, 0, task.niceness)
    except OSError:
        pass
    with storage.open_input(task.rows) as f:
        rows = pq.read_table(f)
    capped = _over_cap(rows, task.config.max_urls_per_domain)
    done, next_chunk = fetched_urls(task.fetch)
    wanted = interleave_domains(
        (u, d)
        for u, d in zip(rows.column("url").to_pylist(), rows.column("domain").to_pylist())
        if u not in done and u not in capped
    )
    if wanted:
        crawl_urls(
            wanted,
            task.config,
            task.fetch,
            WEBTEXT_FIRST_CHUNK=next_chunk,
            WEBTEXT_UNIT_TOTAL=len(wanted),
            WEBTEXT_UNIT=task.name,
            WEBTEXT_PROGRESS=task.progress,
        )
    statuses = write_part(rows, task.fetch, task.part, capped)
    storage.delete(task.fetch)
    return {"name": task.name, "rows": rows.num_rows, "statuses": statuses, "refetch_skipped": len(done)}


def interleave_domains(pairs) -> list[str]:
    """Unique URLs in round-robin order over their domains: Scrapy admits CONCURRENT_REQUESTS requests
    in arrival order and queues them per domain, so a run of one domain's URLs would leave only
    CONCURRENT_REQUESTS_PER_DOMAIN of them in flight."""
    by_domain: dict[str, list[str]] = {}
    for url, domain in pairs:
        by_domain.setdefault(domain, []).append(url)
    queues = [list(dict.fromkeys(urls)) for urls in by_domain.values()]
    return [url for round_ in itertools.zip_longest(*queues) for url in round_ if url is not None]


def _over_cap(rows: pa.Table, cap: int | None) -> set[str]:
    """URLs past the first `cap` of their domain (rows are sorted by domain and URL, so it is stable)."""
    if cap is None:
        return set()
    per_domain: Counter = Counter()
    kept: set[str] = set()
    over: set[str] = set()
    for url, domain in zip(rows.column("url").to_pylist(), rows.column("domain").to_pylist()):
        if url in kept or url in over:
            continue
        if per_domain[domain] < cap:
            per_domain[domain] += 1
            kept.add(url)
        else:
            over.add(url)
    return over


def write_part(rows: pa.Table, fetch_dir: str, part: str, capped: set[str]) -> dict[str, int]:
    """Join the fetch chunks to the input rows (one pages row per input row) chunk by chunk.

    A URL Scrapy produced no item for (which would be a bug) gets status "lost" rather than vanishing.
    """
    index: dict[str, list[int]] = {}
    for i, url in enumerate(rows.column("url").to_pylist()):
        index.setdefault(url, []).append(i)
    statuses: Counter = Counter()
    chunks = storage.list_files(fetch_dir, (".parquet",)) if storage.exists(fetch_dir) else []
    with storage.parquet_writer(part, PAGES, compression="zstd") as writer:
        pending: list[pa.Table] = []
        size = 0
        for location in chunks:
            with storage.open_input(location) as f:
                fetched = pq.read_table(f)
            take_rows, take_fetch = [], []
            for j, url in enumerate(fetched.column("url").to_pylist()):
                for i in index.pop(url, ()):  # pop: a URL written twice counts once
                    take_rows.append(i)
                    take_fetch.append(j)
            if take_rows:
                pending.append(_pages(rows.take(take_rows), fetched.take(take_fetch)))
                size += pending[-1].nbytes
            if size >= ROW_GROUP_BYTES:
                _write(writer, pending, statuses)
                pending, size = [], 0
        _write(writer, pending, statuses)
        if index:
            left = sorted(i for ids in index.values() for i in ids)
            rest = rows.take(left)
            status = ["domain_cap" if u in capped else "lost" for u in rest.column("url").to_pylist()]
            lost = status.count("lost")
            if lost:
                log.error("%s: %d URLs produced no crawl result", part, lost)
            fetched = pa.table({"url": rest.column("url"), "status": pa.array(status, pa.string())})
            _write(writer, [_pages(rest, fetched)], statuses)
    return dict(statuses)


def _pages(rows: pa.Table, fetched: pa.Table) -> pa.Table:
    columns = {name: rows.column(name) for name in PROVENANCE.names}
    for f in FETCH:
        if f.name != "url":
            columns[f.name] = (
                fetched.column(f.name) if f.name in fetched.column_names else pa.nulls(fetched.num_rows, f.type)
            )
    return pa.table(columns, schema=PAGES)


def _write(writer, tables: list[pa.Table], statuses: Counter) -> None:
    if not tables:
        return
    table = pa.concat_tables(tables)
    writer.write_table(table)
    values, counts = table.column("status").value_counts().flatten()
    statuses.update(dict(zip(values.to_pylist(), counts.to_pylist())))


def part_statuses(part: str) -> dict[str, int]:
    with storage.open_input(part) as f:
        column = pq.read_table(f, columns=["status"]).column("status")
    values, counts = column.value_counts().flatten()
    return dict(zip(values.to_pylist(), counts.to_pylist()))


# -- the plan ---------------------------------------------------------------------------------------


def crawl_sources(stage: Stage, inputs: list[str]) -> tuple[list[str], int]:
    """Parquet files (checked for a `url` column) and .txt URL lists of the inputs, and about how many
    URLs they hold (exact for Parquet, from the size for text)."""
    sources, parquet, estimate = [], [], 0
    for location in inputs:
        if location.endswith(TEXT_SUFFIXES) and storage.is_file(location):
            sources.append(location)
            estimate += storage.size(location) // 50 + 1
            continue
        try:
            files = storage.parquet_files(location)
        except OSError as exc:
            raise InputError(f"{stage.name}: {exc}") from exc
        parquet += files
        sources += files
    return sources, estimate + check_inputs(stage, parquet)


MIN_BUCKETS = 16  # a small crawl is still cut into units enough for a small cluster's workers


def bucket_count(config: CrawlConfig, urls: int) -> int:
    """About one bucket per `crawl.unit_urls` URLs, at least MIN_BUCKETS and at most `crawl.buckets`:
    from the input size only, so the units do not depend on the cluster."""
    return max(1, min(config.buckets, max(MIN_BUCKETS, -(-urls // config.unit_urls))))


def crawl_plan(run: Run) -> StageStats:
    config: CrawlConfig = run.config
    stats = run.stats
    sources, estimate = crawl_sources(run.stage, run.inputs)
    digest = hashlib.sha256(
        json.dumps([input_fingerprint(run.inputs), config_fingerprint(config)], default=str).encode()
    ).hexdigest()
    record = storage.join(run.scratch, UNITS_FILE)
    plan = storage.read_json(record) if storage.exists(record) else None
    if plan is None or plan.get("fingerprint") != digest:
        for location in storage.list_files(run.out, recursive=False):
            storage.delete(location)  # parts of another input or config: never mixed with these
        storage.delete(run.scratch)
        plan = _make_units(run, sources, bucket_count(config, estimate), digest)
        storage.write_json(record, plan)
    else:
        print(f"crawl: resuming {len(plan['units'])} units recorded in {record}", file=sys.stderr, flush=True)
    storage.delete_temporaries(run.out)
    stats.input = plan["input"]
    if plan["dropped"]:
        stats.dropped[NULL_URL] += plan["dropped"]
    todo = []
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    progress = sys.stderr.isatty()
    finished = {storage.name(f) for f in storage.list_files(run.out, (".parquet",), recursive=False)}  # one listing
    for unit in plan["units"]:
        part = storage.join(run.out, f"part-{unit['name']}.parquet")
        if storage.name(part) in finished:
            stats.output += unit["rows"]
            stats.outcomes.update(part_statuses(part))
            continue
        rows = storage.join(run.scratch, "units", f"{unit['name']}.parquet")
        todo.append(
            UnitTask(
                unit["name"],
                rows,
                storage.join(run.scratch, "fetch", unit["name"]),
                part,
                config,
                progress,
                niceness,
                unit["rows"],
                unit.get("largest_domain", unit["rows"]),
            )
        )
    # The largest domain sets a unit's least duration: those units start first, so the crawl's end is set
    # by its slowest domain, not by when that domain's unit happened to start.
    todo.sort(key=lambda task: (-task.largest_domain, -task.urls))
    resources = Resources(num_cpus=1, threads=config.units_per_cpu)
    for result in run.tasks(crawl_unit, todo, resources, desc="crawl units"):
        stats.output += result["rows"]
        stats.outcomes.update(result["statuses"])
    if not plan["units"]:
        storage.write_parquet(storage.join(run.out, "part-00000.parquet"), PAGES.empty_table())
    return stats


def _make_units(run: Run, sources: list[str], buckets: int, digest: str) -> dict:
    config: CrawlConfig = run.config
    split = storage.join(run.scratch, "split")
    results = run.tasks(
        split_task, [SplitTask(s, i, buckets, split) for i, s in enumerate(sources)], desc="split by domain"
    )
    filled = sorted({b for r in results for b in r["buckets"]})  # the driver never lists the split files
    units_dir = storage.join(run.scratch, "units")
    cut = run.tasks(
        units_task,
        [UnitsTask(storage.join(split, f"b{b:05d}"), units_dir, config.unit_urls) for b in filled],
        desc="cut units",
    )
    storage.delete(split)
    units = [u for bucket in cut for u in bucket]
    return {
        "fingerprint": digest,
        "input": sum(r["rows"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "units": units,
    }


CRAWL = Stage(
    name="crawl",
    unit="urls",
    required={"url": pa.string()},
    optional=CRAWL_OPTIONAL,
    output=PAGES,
    plan=crawl_plan,
    non_null=("url",),
    resources=Resources(num_cpus=1),
    resumable=True,
    description="URLs -> one pages row per URL (status, HTML), fetched politely with Scrapy",
)
