"""Crawl: URLs in, one pages row per input row out, in small fixed work units that resume.

Three steps (`webtext.core.stage.Step`):
1. split: each input file (Parquet with at least `url`, or a .txt list of URLs) is read in batches and
   its rows are hashed by registered domain into buckets (their number from the input size only);
2. units: one task per bucket cuts it into units of about `crawl.unit_urls` URLs, whole domains only, so
   a domain is crawled by one unit at a time and per-domain politeness holds across the cluster. The
   unit list depends on neither the cluster size nor the order tasks ran in;
3. fetch (resumable): one worker process per CPU crawls `crawl.units_per_cpu` units at once (a unit
   mostly waits on the network), units with the largest domain first; each worker keeps one Twisted
   reactor (it cannot restart) in a thread and runs Scrapy crawls on it, unit after unit. Fetched pages
   stream to small chunk files; a unit killed midway reads its chunks back on rerun and fetches only
   the rest, and a unit whose part file exists is only counted. The part file is written chunk by
   chunk, joined to the input rows by URL, so a unit's HTML is never all in memory.

What a crawl fetched depends on its inputs and config, not on webtext's code (`depends_on_code`), so
an upgraded webtext resumes a crawl where it stopped; changed inputs or config start it afresh.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawler.buckets import bucket_of, by_bucket
from crawler.pipelines import FETCH
from crawler.urls import registered_domain
from webtext.core import storage
from webtext.core.config import CrawlConfig
from webtext.core.failures import DropSampler, DropSink
from webtext.core.schemas import PAGES, PROVENANCE_FIELDS
from webtext.core.stage import (
    DROP_REASON,
    TEXT_SUFFIX,
    Resources,
    Stage,
    Step,
    StepContext,
    conform_input,
    constant_default,
    null_default,
)

log = logging.getLogger(__name__)

READ_ROWS = 65_536
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


# -- step 1: split the inputs into domain buckets ---------------------------------------------------


@dataclass(frozen=True)
class SplitTask:
    source: str  # a Parquet file or a .txt list of URLs
    index: int
    buckets: int
    folder: str
    drops: DropSink


def _text_batches(source: str):
    """A .txt list of URLs, one per non-empty line, as one-column batches."""
    lines = [line.strip() for line in storage.read_text(source).splitlines()]
    yield from pa.table({"url": pa.array([line for line in lines if line], pa.string())}).to_batches(READ_ROWS)


def _batches(source: str):
    if source.endswith(TEXT_SUFFIX):
        yield from _text_batches(source)
        return
    with storage.open_input(source) as f:
        reader = pq.ParquetFile(f)
        names = [n for n in CRAWL.input_columns() if n in reader.schema_arrow.names]
        yield from reader.iter_batches(READ_ROWS, columns=names)


def _without_url(table: pa.Table) -> pa.Array:
    urls = table.column("url")
    return pc.fill_null(pc.or_(pc.is_null(urls), pc.equal(urls, "")), True)


def _with_domains(table: pa.Table) -> pa.Table:
    """A present `domain` column with gaps gets them computed."""
    domains = table.column("domain")
    if not domains.null_count:
        return table
    computed = _domains(table)
    return table.set_column(table.column_names.index("domain"), "domain", pc.coalesce(domains, computed))


def _as_dropped(rows: pa.Table) -> pa.Table:
    """Rows without a URL, as drop examples: their first Reddit id and title say which submission it was."""
    return pa.table(
        {
            "id": pc.list_element(rows.column("reddit_ids"), 0),
            "text": pc.list_element(rows.column("titles"), 0),
            DROP_REASON: pa.array([NULL_URL] * rows.num_rows, pa.string()),
        }
    )


def split_task(task: SplitTask) -> dict:
    """Rows of one input file into bucket files by registered domain; returns counts."""
    rows = dropped = 0
    filled: set[int] = set()
    drops = DropSampler(task.drops.folder, task.drops.keep, f"f{task.index:05d}")
    for n, batch in enumerate(_batches(task.source)):
        table = conform_input(CRAWL, pa.Table.from_batches([batch]))
        rows += table.num_rows
        missing = _without_url(table)
        if pc.any(missing).as_py():
            drops.add(_as_dropped(table.filter(missing)))
            dropped += pc.sum(missing).as_py()
            table = table.filter(pc.invert(missing))
        table = _with_domains(table).select(PROVENANCE.names).cast(PROVENANCE)
        for bucket, part in by_bucket(table, bucket_of(table.column("domain"), task.buckets)):
            path = storage.join(task.folder, f"b{bucket:05d}", f"f{task.index:05d}-{n:05d}.parquet")
            storage.write_parquet(path, part, compression="zstd")
            filled.add(bucket)
    drops.close()
    if dropped:
        log.warning("%s: %d rows without a URL, counted as %s", task.source, dropped, NULL_URL)
    text_rows = rows if task.source.endswith(TEXT_SUFFIX) else 0
    return {"rows": rows, "text_rows": text_rows, "dropped": dropped, "buckets": sorted(filled)}


MIN_BUCKETS = 16  # a small crawl is still cut into units enough for a small cluster's workers


def bucket_count(config: CrawlConfig, urls: int) -> int:
    """About one bucket per `crawl.unit_urls` URLs, at least MIN_BUCKETS and at most `crawl.buckets`:
    from the input size only, so the units do not depend on the cluster."""
    return max(1, min(config.buckets, max(MIN_BUCKETS, -(-urls // config.unit_urls))))


def _split_tasks(ctx: StepContext) -> list[SplitTask]:
    # a .txt list is counted when read: its size estimates its URLs (about 50 bytes each)
    estimate = ctx.stats.input + sum(storage.size(f) // 50 + 1 for f in ctx.files if f.endswith(TEXT_SUFFIX))
    buckets = bucket_count(ctx.config, estimate)
    folder, drops = ctx.folder("split"), ctx.drops("split")
    return [SplitTask(source, i, buckets, folder, drops) for i, source in enumerate(ctx.files)]


def _split_finish(ctx: StepContext, results: list[dict]) -> list[int]:
    ctx.stats.input += sum(r["text_rows"] for r in results)
    if any(r["dropped"] for r in results):
        ctx.stats.dropped[NULL_URL] += sum(r["dropped"] for r in results)
    return sorted({b for r in results for b in r["buckets"]})  # the buckets with rows: the driver lists no files


# -- step 2: cut buckets into units -----------------------------------------------------------------


@dataclass(frozen=True)
class UnitsTask:
    bucket: str  # folder of one bucket's rows
    units: str  # folder of unit input files
    unit_urls: int


def domain_runs(domains: pa.Array) -> list[tuple[int, int]]:
    """(start, end) of each domain's rows in a column sorted by domain."""
    n = len(domains)
    if n == 0:
        return []
    changed = pc.not_equal(domains.slice(1), domains.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = [0, *(np.flatnonzero(changed) + 1).tolist()]
    return list(zip(starts, [*starts[1:], n]))


def pack_units(runs: list[tuple[int, int]], unit_urls: int) -> list[tuple[int, int, int]]:
    """Consecutive domains packed into units of at most `unit_urls` rows, whole domains only (a bigger
    domain is a unit alone): (start, end, rows of its largest domain) of each."""
    units: list[tuple[int, int, int]] = []
    for start, end in runs:
        if units and end - units[-1][0] <= unit_urls:
            first, _, largest = units[-1]
            units[-1] = (first, end, max(largest, end - start))
        else:
            units.append((start, end, end - start))
    return units


def units_task(task: UnitsTask) -> list[dict]:
    """Cut a bucket into units of whole domains, about `unit_urls` rows each."""
    tables = []
    for location in storage.list_files(task.bucket, (".parquet",)):
        with storage.open_input(location) as f:
            tables.append(pq.read_table(f))
    rows = pa.concat_tables(tables).sort_by([("domain", "ascending"), ("url", "ascending")])
    units = []
    for start, end, largest in pack_units(domain_runs(rows.column("domain").combine_chunks()), task.unit_urls):
        unit = f"{storage.name(task.bucket)}-u{len(units):04d}"
        storage.write_parquet(
            storage.join(task.units, f"{unit}.parquet"), rows.slice(start, end - start), compression="zstd"
        )
        units.append({"name": unit, "rows": end - start, "largest_domain": largest})
    return units


def _units_tasks(ctx: StepContext) -> list[UnitsTask]:
    split, units = ctx.folder("split"), ctx.folder("units")
    return [UnitsTask(storage.join(split, f"b{b:05d}"), units, ctx.config.unit_urls) for b in ctx.summary("split")]


def _units_finish(ctx: StepContext, results: list[list[dict]]) -> list[dict]:
    return [unit for bucket in results for unit in bucket]  # the unit list: the fetch step's tasks


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
    """Fetch a unit's URLs (those not already in its chunks), then write its part file; a unit whose
    part a killed run wrote is only counted."""
    if storage.exists(task.part):
        return {"name": task.name, "rows": task.urls, "statuses": part_statuses(task.part), "refetch_skipped": 0}
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


def _fetch_tasks(ctx: StepContext) -> list[UnitTask]:
    """Every unit, the largest domain first: a unit's least duration is its largest domain's, so the
    crawl's end is set by its slowest domain, not by when that domain's unit happened to start."""
    config: CrawlConfig = ctx.config
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    progress = sys.stderr.isatty()
    units, fetch = ctx.folder("units"), ctx.folder("fetch")
    tasks = [
        UnitTask(
            unit["name"],
            storage.join(units, f"{unit['name']}.parquet"),
            storage.join(fetch, unit["name"]),
            storage.join(ctx.out, f"part-{unit['name']}.parquet"),
            config,
            progress,
            niceness,
            unit["rows"],
            unit["largest_domain"],
        )
        for unit in ctx.summary("units")
    ]
    return sorted(tasks, key=lambda task: (-task.largest_domain, -task.urls))


def _fetch_finish(ctx: StepContext, results: list[dict]) -> dict:
    for result in results:
        ctx.stats.output += result["rows"]
        ctx.stats.outcomes.update(result["statuses"])
    return {"units": len(results), "refetch_skipped": sum(r["refetch_skipped"] for r in results)}


CRAWL = Stage(
    name="crawl",
    unit="urls",
    required={"url": pa.string()},
    optional=CRAWL_OPTIONAL,
    output=PAGES,
    steps=(
        Step("split", split_task, _split_tasks, _split_finish),
        Step("units", units_task, _units_tasks, _units_finish),
        # one worker process per CPU crawls `units_per_cpu` units at once: a unit mostly waits
        Step(
            "fetch",
            crawl_unit,
            _fetch_tasks,
            _fetch_finish,
            resources=lambda ctx: Resources(num_cpus=1, threads=ctx.config.units_per_cpu),
            resumable=True,
        ),
    ),
    non_null=("url",),
    text_column="url",
    depends_on_code=False,
    description="URLs -> one pages row per URL (status, HTML), fetched politely with Scrapy",
)
