"""Extract: pages (url + html bytes) in, documents (id, url, text + metadata) out.

Works on Arrow batches so that Ray Data's `map_batches` can spread it over cores and nodes. Every
input row comes out once: kept rows have `drop_reason` null, the others say why they went.
"""

from __future__ import annotations

import pyarrow as pa
import trafilatura
from w3lib.encoding import html_to_unicode

from cleaning.filters import DocumentFilter, clean_text
from crawler.urls import url_id
from webtext.config import CleanConfig
from webtext.schemas import DOCS

DROP_REASON = pa.field("drop_reason", pa.string())
EXTRACTED = DOCS.append(DROP_REASON)


def decode_html(body: bytes, content_type: str | None) -> str:
    """Decode with the charset from the BOM, the Content-Type header or <meta>, else detection (w3lib)."""
    _, text = html_to_unicode(content_type or "", body)
    return text


class Extractor:
    """trafilatura plus cleaning; a callable class so Ray actors build the language model once."""

    def __init__(self, config: CleanConfig):
        self.config = config
        self.filter = DocumentFilter(config)

    def extract(self, row: dict) -> dict:
        """One pages row to one documents row (with `drop_reason` set when it is not kept)."""
        doc = {name: row.get(name) for name in EXTRACTED.names if name in row}
        doc["id"] = url_id(row["url"])
        doc["text"] = ""
        status = row.get("status", "ok")
        if status != "ok" or not row.get("html"):
            doc["drop_reason"] = status if status != "ok" else "empty_page"
            return doc
        c = self.config
        result = trafilatura.bare_extraction(
            decode_html(row["html"], row.get("content_type")),
            url=row.get("final_url") or row["url"],
            favor_precision=c.favor_precision,
            favor_recall=c.favor_recall,
            include_comments=c.include_comments,
            include_tables=c.include_tables,
            with_metadata=True,
        )
        text = clean_text(result.text) if result is not None and result.text else ""
        if not text:
            doc["drop_reason"] = "extraction_failed"
            return doc
        lang, score = self.filter.language(text)
        doc.update(
            text=text,
            title=result.title,
            language=lang,
            language_score=score,
            n_words=len(text.split()),
            n_chars=len(text),
            drop_reason=self.filter.reason(text, lang, score),
        )
        return doc

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.extract(row) for row in batch.to_pylist()], schema=EXTRACTED)
