"""Crawl one partition of URLs with Scrapy and write its pages part file.

A partition holds whole registered domains, so per-domain politeness holds across workers. Each
partition runs in a fresh process (Twisted's reactor cannot be restarted), writes its part file
atomically, and is skipped when the part file already exists: an interrupted crawl resumes.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from scrapy.crawler import CrawlerProcess

from crawler.pipelines import FETCH
from crawler.spider import PageSpider
from webtext.config import CrawlConfig
from webtext.schemas import PAGES, URLS

log = logging.getLogger(__name__)


def partition_of(domain: str, partitions: int) -> int:
    """Stable partition of a registered domain (crc32: the same on every node and run)."""
    return zlib.crc32(domain.encode()) % partitions


def scrapy_settings(config: CrawlConfig, fetch_path: Path) -> dict:
    """Scrapy settings from the crawl config; everything politeness and safety depend on is explicit."""
    return {
        "BOT_NAME": "webtext",
        "USER_AGENT": config.user_agent,
        "ROBOTSTXT_OBEY": config.obey_robots_txt,
        "CONCURRENT_REQUESTS": config.concurrent_requests,
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.concurrent_requests_per_domain,
        "DOWNLOAD_DELAY": config.download_delay_s,
        "AUTOTHROTTLE_ENABLED": config.autothrottle,
        "DOWNLOAD_TIMEOUT": config.timeout_s,
        "RETRY_ENABLED": config.retries > 0,
        "RETRY_TIMES": config.retries,
        "REDIRECT_MAX_TIMES": config.max_redirects,
        "DOWNLOAD_MAXSIZE": config.max_bytes,  # also caps the decompressed size (gzip bombs)
        "DOWNLOAD_WARNSIZE": 0,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "ERROR",
        "LOG_INSTALL_ROOT_HANDLER": False,
        "HTTPERROR_ALLOW_ALL": False,
        "DOWNLOADER_MIDDLEWARES": {
            "crawler.middlewares.AddressGuardMiddleware": 50,
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "crawler.middlewares.RobotsTxtMiddleware": 100,
        },
        "ITEM_PIPELINES": {"crawler.pipelines.ParquetPagesPipeline": 100},
        "WEBTEXT_ALLOWED_NETWORKS": config.allowed_networks,
        "WEBTEXT_FETCH_PATH": str(fetch_path),
    }


def crawl_urls(urls: list[str], config: CrawlConfig, fetch_path: Path) -> None:
    """Fetch `urls` with Scrapy in this process, streaming results to `fetch_path`. Call once per process."""
    process = CrawlerProcess(scrapy_settings(config, fetch_path))
    process.crawl(PageSpider, urls=urls)
    process.start(install_signal_handlers=False)


def crawl_partition(urls: pa.Table, config: CrawlConfig, part_path: Path) -> dict[str, int]:
    """Crawl the URLs of one partition and write their pages, one row per input URL, to `part_path`.

    Returns the count of each terminal status.
    """
    part_path = Path(part_path)
    fetch_path = part_path.with_name(part_path.name + ".fetch.tmp")
    crawl_urls(urls.column("url").to_pylist(), config, fetch_path)
    pages = align_to_urls(urls, pq.read_table(fetch_path))
    tmp_path = part_path.with_name(part_path.name + ".tmp")
    pq.write_table(pages, tmp_path, compression="zstd")
    os.replace(tmp_path, part_path)
    fetch_path.unlink()
    return {s: n for s, n in zip(*_value_counts(pages.column("status")))}


def align_to_urls(urls: pa.Table, fetched: pa.Table) -> pa.Table:
    """Join fetch results to the input rows: exactly one pages row per input URL, in input order.

    A URL Scrapy produced no item for (which would be a bug) gets status "lost" rather than vanishing.
    """
    by_url: dict[str, int] = {}
    for i, url in enumerate(fetched.column("url").to_pylist()):
        by_url.setdefault(url, i)
    missing = [u for u in urls.column("url").to_pylist() if u not in by_url]
    if missing:
        log.error("%d URLs produced no crawl result, e.g. %s", len(missing), missing[0])
        lost = pa.Table.from_pylist([{"url": u, "status": "lost"} for u in missing], schema=FETCH)
        fetched = pa.concat_tables([fetched, lost])
        by_url.update({u: fetched.num_rows - len(missing) + i for i, u in enumerate(missing)})
    order = pa.array([by_url[u] for u in urls.column("url").to_pylist()], pa.int64())
    rows = fetched.take(order)
    columns = {name: urls.column(name) for name in URLS.names}
    columns.update({name: rows.column(name) for name in FETCH.names if name != "url"})
    return pa.table(columns, schema=PAGES)


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counts = column.value_counts()
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()
