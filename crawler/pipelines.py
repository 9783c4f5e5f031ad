"""Item pipeline: stream fetched pages to small chunk files as they arrive, so a killed unit resumes.

Each chunk is written atomically through `webtext.core.storage` (local or object store) every
WEBTEXT_CHUNK_ROWS items or WEBTEXT_CHUNK_SECONDS seconds, whichever comes first; on a rerun the unit
reads back the URLs of its chunks and fetches only the others.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import pyarrow as pa

from webtext.core import storage
from webtext.core.schemas import FETCH_FIELDS

FETCH = pa.schema([pa.field("url", pa.string(), nullable=False)] + FETCH_FIELDS)


def chunk_name(index: int) -> str:
    return f"c{index:06d}.parquet"


class ChunkedPagesPipeline:
    """Buffers items and writes them as numbered chunk files under WEBTEXT_FETCH_DIR."""

    def __init__(
        self, folder: str, first_chunk: int, rows: int, seconds: float, total: int, label: str, progress: bool
    ):
        self.folder, self.index, self.rows, self.seconds = folder, first_chunk, rows, seconds
        self.buffer: list[dict] = []
        self.last = time.monotonic()
        self.total, self.label, self.progress = total, label, progress
        self.done = 0
        self.statuses: Counter = Counter()
        self.start = self.printed = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        return cls(
            s["WEBTEXT_FETCH_DIR"],
            s.getint("WEBTEXT_FIRST_CHUNK", 0),
            s.getint("WEBTEXT_CHUNK_ROWS", 32),
            s.getfloat("WEBTEXT_CHUNK_SECONDS", 2.0),
            s.getint("WEBTEXT_UNIT_TOTAL", 0),
            s.get("WEBTEXT_UNIT", ""),
            s.getbool("WEBTEXT_PROGRESS", False),
        )

    def process_item(self, item, spider=None):
        self.buffer.append(item)
        self.done += 1
        self.statuses[item["status"]] += 1
        now = time.monotonic()
        if len(self.buffer) >= self.rows or now - self.last >= self.seconds:
            self.flush()
        if self.progress and now - self.printed >= 10:
            self.printed = now
            print(self.line(now), file=sys.stderr, flush=True)
        return item

    def line(self, now: float) -> str:
        rate = self.done / max(1e-9, now - self.start)
        eta = (self.total - self.done) / rate if rate else float("nan")
        statuses = " ".join(f"{k} {v}" for k, v in self.statuses.most_common())
        return f"crawl {self.label}: {self.done}/{self.total} URLs, {rate:.1f} pages/s, ETA {eta:.0f}s, {statuses}"

    def flush(self):
        self.last = time.monotonic()
        if self.buffer:
            table = pa.Table.from_pylist(self.buffer, schema=FETCH)
            storage.write_parquet(storage.join(self.folder, chunk_name(self.index)), table, compression="zstd")
            self.index += 1
            self.buffer = []

    def close_spider(self, spider=None):
        self.flush()
