"""The Scrapy spider: fetch each harvested URL once and turn every outcome into one pages row."""

from __future__ import annotations

from datetime import datetime, timezone

import scrapy
from scrapy import signals
from scrapy.exceptions import StopDownload

from crawler.outcomes import failure_status

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain")


def is_html(content_type: str | None) -> bool:
    """Pages worth extracting; a missing Content-Type is given the benefit of the doubt."""
    return not content_type or content_type.split(";")[0].strip().lower() in HTML_TYPES


def _error_text(exc: BaseException, request) -> str:
    text = f"{type(exc).__name__}: {exc}"
    retry_after = request.meta.get("webtext_retry_after")
    if retry_after is not None:
        text += f" (Retry-After {retry_after:.0f} s)"
    return text[:500]


class PageSpider(scrapy.Spider):
    """Requests exactly the given URLs, follows nothing else, and yields one item per URL."""

    name = "webtext"

    def __init__(self, urls: list[str], **kwargs):
        super().__init__(**kwargs)
        self.urls = urls

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.stop_non_html, signal=signals.headers_received)
        return spider

    async def start(self):
        for url in self.urls:
            yield scrapy.Request(
                url, callback=self.fetched, errback=self.failed, dont_filter=True, meta={"source_url": url}
            )

    def stop_non_html(self, headers, body_length, request, spider):
        """Don't download the body of images, PDFs and archives: the headers say enough."""
        if not is_html(headers.get(b"Content-Type", b"").decode("latin-1")):
            raise StopDownload(fail=False)

    def fetched(self, response):
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1") or None
        html = is_html(content_type)
        yield {
            "url": response.meta["source_url"],
            "status": "ok" if html else "not_html",
            "http_status": response.status,
            "final_url": response.url,
            "content_type": content_type,
            "html": response.body if html else None,
            "error": None,
            "fetched_at": datetime.now(timezone.utc),
        }

    def failed(self, failure):
        exc = failure.value
        response = getattr(exc, "response", None)
        yield {
            "url": failure.request.meta["source_url"],
            "status": failure_status(exc),
            "http_status": response.status if response is not None else None,
            "final_url": response.url if response is not None else None,
            "content_type": None,
            "html": None,
            "error": _error_text(exc, failure.request),
            "fetched_at": datetime.now(timezone.utc),
        }
