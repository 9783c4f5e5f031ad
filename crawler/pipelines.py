"""Item pipeline: stream fetched pages into a Parquet file as they arrive, in bounded memory."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from webtext.schemas import FETCH_FIELDS

FETCH = pa.schema([pa.field("url", pa.string(), nullable=False)] + FETCH_FIELDS)


class ParquetPagesPipeline:
    """Buffers items and writes a row group every WEBTEXT_BATCH_ROWS items to WEBTEXT_FETCH_PATH."""

    def __init__(self, path: str, batch_rows: int):
        self.path = path
        self.batch_rows = batch_rows
        self.buffer: list[dict] = []
        self.writer: pq.ParquetWriter | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings["WEBTEXT_FETCH_PATH"], crawler.settings.getint("WEBTEXT_BATCH_ROWS", 256))

    def open_spider(self, spider=None):
        self.writer = pq.ParquetWriter(self.path, FETCH, compression="zstd")

    def process_item(self, item, spider=None):
        self.buffer.append(item)
        if len(self.buffer) >= self.batch_rows:
            self.flush()
        return item

    def flush(self):
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=FETCH))
            self.buffer = []

    def close_spider(self, spider=None):
        self.flush()
        self.writer.close()
